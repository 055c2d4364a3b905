// The k6/metrics module: custom Trend, Counter, Rate and Gauge metrics.
import { metric, record } from './state.mjs';

class Metric {
  constructor(name, type, isTime) {
    if (!/^[A-Za-z0-9_]{1,128}$/.test(name)) {
      throw new Error(`k6 shim: invalid metric name ${JSON.stringify(name)}`);
    }
    this.name = name;
    this.type = type;
    this.isTime = !!isTime;
    metric(name, type, this.isTime);
  }

  add(value, tags) {
    const v = this.type === 'rate' ? (value ? 1 : 0) : Number(value);
    record(this.name, this.type, v, tags, this.isTime);
  }
}

export class Trend extends Metric {
  constructor(name, isTime) {
    super(name, 'trend', isTime);
  }
}

export class Counter extends Metric {
  constructor(name) {
    super(name, 'counter');
  }
}

export class Rate extends Metric {
  constructor(name) {
    super(name, 'rate');
  }
}

export class Gauge extends Metric {
  constructor(name, isTime) {
    super(name, 'gauge', isTime);
  }
}

export default { Trend, Counter, Rate, Gauge };
