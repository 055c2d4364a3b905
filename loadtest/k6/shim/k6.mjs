// The k6 module: check, sleep, group, fail.
import { record } from './state.mjs';

export function check(value, sets, tags) {
  let all = true;
  for (const [name, fn] of Object.entries(sets)) {
    let ok;
    try {
      ok = typeof fn === 'function' ? !!fn(value) : !!fn;
    } catch (e) {
      ok = false;
    }
    record('checks', 'rate', ok ? 1 : 0, { ...tags, check: name });
    if (!ok) {
      all = false;
    }
  }
  return all;
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

// sleep blocks the VU for secs seconds, as k6's does.
export function sleep(secs) {
  Atomics.wait(sleeper, 0, 0, Math.max(0, secs * 1000));
}

export function group(name, fn) {
  return fn();
}

export function fail(msg) {
  throw new Error(msg);
}

export default { check, sleep, group, fail };
