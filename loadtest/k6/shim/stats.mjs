// Aggregation of the VUs' samples and evaluation of k6 thresholds.

// merge joins the registries the threads sent into one map
// name -> { type, isTime, samples }.
export function merge(snapshots) {
  const all = new Map();
  for (const snap of snapshots) {
    for (const m of snap) {
      const got = all.get(m.name);
      if (!got) {
        all.set(m.name, { type: m.type, isTime: m.isTime, samples: [...m.samples] });
      } else {
        got.samples.push(...m.samples);
      }
    }
  }
  return all;
}

// select resolves a threshold key, a metric name with an optional tag
// filter: "http_req_duration{method:PATCH}".
export function select(metrics, key) {
  const m = /^([A-Za-z0-9_]+)(?:\{(.*)\})?$/.exec(key.trim());
  if (!m) {
    throw new Error(`k6 shim: bad threshold metric ${JSON.stringify(key)}`);
  }
  const metric = metrics.get(m[1]);
  if (!metric) {
    return null;
  }
  if (!m[2]) {
    return metric;
  }
  const want = m[2].split(',').map((kv) => {
    const i = kv.indexOf(':');
    return [kv.slice(0, i).trim(), kv.slice(i + 1).trim().replace(/^["']|["']$/g, '')];
  });
  const samples = metric.samples.filter(([, tags]) => tags && want.every(([k, v]) => String(tags[k]) === v));
  return { ...metric, samples };
}

function percentile(sorted, p) {
  if (sorted.length === 0) {
    return 0;
  }
  const i = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(i);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (i - lo);
}

// stats computes what thresholds and the summary read of one metric.
// elapsedMs gives counters their per-second rate.
export function stats(metric, elapsedMs) {
  const vals = metric.samples.map(([v]) => v);
  const n = vals.length;
  const sum = vals.reduce((a, b) => a + b, 0);
  switch (metric.type) {
    case 'trend': {
      const sorted = [...vals].sort((a, b) => a - b);
      return {
        count: n,
        avg: n ? sum / n : 0,
        min: n ? sorted[0] : 0,
        max: n ? sorted[n - 1] : 0,
        med: percentile(sorted, 50),
        p: (q) => percentile(sorted, q),
      };
    }
    case 'rate':
      return { rate: n ? sum / n : 0, passes: sum, fails: n - sum };
    case 'counter':
      return { count: sum, rate: elapsedMs > 0 ? sum / (elapsedMs / 1000) : 0 };
    case 'gauge':
      return { value: n ? vals[n - 1] : 0, min: n ? Math.min(...vals) : 0, max: n ? Math.max(...vals) : 0 };
  }
  throw new Error(`k6 shim: unknown metric type ${metric.type}`);
}

const ops = {
  '<': (a, b) => a < b,
  '<=': (a, b) => a <= b,
  '>': (a, b) => a > b,
  '>=': (a, b) => a >= b,
  '==': (a, b) => a === b,
  '===': (a, b) => a === b,
  '!=': (a, b) => a !== b,
};

// evaluate checks one threshold expression ("p(95)<500", "rate<0.01")
// against a metric's stats; it returns the observed value and whether the
// threshold holds.
export function evaluate(expr, st) {
  const m = /^\s*(avg|min|max|med|count|rate|value|p\((\d+(?:\.\d+)?)\))\s*(<=|>=|===|==|!=|<|>)\s*(-?[\d.]+(?:e[+-]?\d+)?)\s*$/i.exec(expr);
  if (!m) {
    throw new Error(`k6 shim: unsupported threshold ${JSON.stringify(expr)}`);
  }
  const got = m[2] !== undefined ? (st.p ? st.p(Number(m[2])) : undefined) : st[m[1]];
  if (got === undefined) {
    throw new Error(`k6 shim: threshold ${JSON.stringify(expr)} does not apply to this metric`);
  }
  return { got, ok: ops[m[3]](got, Number(m[4])) };
}

// thresholdList normalises an options.thresholds entry.
export function thresholdList(v) {
  return (Array.isArray(v) ? v : [v]).map((t) => (typeof t === 'string' ? t : t.threshold));
}
