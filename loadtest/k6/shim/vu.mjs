// One VU (or the setup/teardown runner): a worker thread that imports the
// script and runs its function for the iterations it claims.
import { workerData, parentPort } from 'node:worker_threads';
import { register } from 'node:module';
import { pathToFileURL } from 'node:url';

register('./hooks.mjs', import.meta.url);
const { attach, snapshot, record } = await import('./state.mjs');

const w = workerData;
globalThis.__ENV = { ...w.env, ...(w.envExtra || {}) };
globalThis.__VU = w.vu;
globalThis.__ITER = 0;
attach(w.port, w.sig);

const mod = await import(pathToFileURL(w.script).href);
const claimed = new Int32Array(w.counter);
const end = w.durationMs ? Date.now() + w.durationMs : Infinity;

let result;
if (w.role === 'setup' || w.role === 'teardown') {
  if (typeof mod[w.role] === 'function') {
    result = mod[w.role](w.data);
  }
} else {
  const fn = mod[w.exec || 'default'];
  if (typeof fn !== 'function') {
    throw new Error(`k6 shim: the script exports no function ${w.exec || 'default'}`);
  }
  for (;;) {
    if (Date.now() >= end) {
      break;
    }
    if (w.iterations !== undefined) {
      // shared-iterations: the counter is shared by all VUs of the
      // scenario; per-vu-iterations: each VU has its own.
      if (Atomics.add(claimed, 0, 1) >= w.iterations) {
        break;
      }
    }
    const began = performance.now();
    try {
      fn(w.data);
    } catch (e) {
      // k6 logs an exception and goes on with the next iteration.
      console.error(`k6 shim: VU ${w.vu} iteration ${globalThis.__ITER}: ${e && e.stack ? e.stack : e}`);
      record('iteration_errors', 'counter', 1, { scenario: w.scenario });
    }
    record('iterations', 'counter', 1, { scenario: w.scenario });
    record('iteration_duration', 'trend', performance.now() - began, { scenario: w.scenario }, true);
    globalThis.__ITER++;
  }
}
parentPort.postMessage({ type: 'done', metrics: snapshot(), result });
