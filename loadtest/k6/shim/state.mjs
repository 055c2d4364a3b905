// Per-thread state of the shim: the metric samples this thread recorded
// and, in a VU thread, the synchronous bridge to the main thread's HTTP
// client.
import { receiveMessageOnPort, parentPort } from 'node:worker_threads';

export const registry = new Map(); // name -> { type, isTime, samples: [[value, tags]] }

export function metric(name, type, isTime = false) {
  let m = registry.get(name);
  if (!m) {
    m = { type, isTime, samples: [] };
    registry.set(name, m);
  } else if (m.type !== type) {
    throw new Error(`k6 shim: metric ${name} is a ${m.type}, not a ${type}`);
  }
  return m;
}

export function record(name, type, value, tags, isTime = false) {
  metric(name, type, isTime).samples.push([Number(value), tags || null]);
}

let bridge = null; // { port, sig }

export function attach(port, sig) {
  bridge = { port, sig: new Int32Array(sig) };
}

// call sends msg to the main thread and blocks until its answer arrives
// on this thread's port: k6's HTTP API is synchronous.
export function call(msg) {
  if (!bridge) {
    throw new Error('k6 shim: HTTP requests are only allowed inside a VU (not in the init context)');
  }
  Atomics.store(bridge.sig, 0, 0);
  parentPort.postMessage(msg);
  Atomics.wait(bridge.sig, 0, 0);
  // The answer is posted before the flag is set; should it not be
  // readable yet, wait for it a little.
  for (let i = 0; i < 1000; i++) {
    const got = receiveMessageOnPort(bridge.port);
    if (got) {
      return got.message;
    }
    Atomics.wait(bridge.sig, 0, 1, 1);
  }
  throw new Error('k6 shim: no answer from the main thread');
}

// snapshot is the registry in a form postMessage can carry.
export function snapshot() {
  return [...registry].map(([name, m]) => ({ name, ...m }));
}
