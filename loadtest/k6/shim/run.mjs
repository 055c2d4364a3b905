#!/usr/bin/env node
// A small stand-in for `k6 run`, so that the test suite can run the k6
// scripts of this directory without k6 (AGPL, not installed here). It
// implements what the scripts use: the k6, k6/http and k6/metrics modules
// (check, sleep, group, fail; request/get/head/post/put/patch/del;
// Trend, Counter, Rate, Gauge), __ENV, __VU, __ITER, setup/teardown,
// options.vus + iterations or duration, options.scenarios with the
// shared-iterations, per-vu-iterations and constant-vus executors, and
// thresholds on metrics and tag-filtered submetrics, evaluated at the
// end: a crossed threshold exits 99, as k6 does.
//
// Each VU is a worker thread; its HTTP calls block (Atomics.wait) while
// the main thread sends them with fetch, so scripts run synchronously as
// under k6. Timing is that of Node's fetch, not of k6's Go client.
//
// usage: node run.mjs [-e KEY=VALUE]... [--summary-json FILE] SCRIPT
import { Worker, MessageChannel } from 'node:worker_threads';
import { register } from 'node:module';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import { writeFileSync } from 'node:fs';
import { durationMs } from './duration.mjs';
import { merge, select, stats, evaluate, thresholdList } from './stats.mjs';

register('./hooks.mjs', import.meta.url);

const args = process.argv.slice(2);
const cliEnv = {};
let summaryFile = '';
let script = '';
while (args.length) {
  const a = args.shift();
  if (a === '-e' || a === '--env') {
    const kv = args.shift();
    const i = kv.indexOf('=');
    cliEnv[kv.slice(0, i)] = kv.slice(i + 1);
  } else if (a === '--summary-json') {
    summaryFile = args.shift();
  } else {
    script = resolve(a);
  }
}
if (!script) {
  console.error('usage: node run.mjs [-e KEY=VALUE]... [--summary-json FILE] SCRIPT');
  process.exit(2);
}
const env = { ...process.env, ...cliEnv };
globalThis.__ENV = env;
const mod = await import(pathToFileURL(script).href);
const options = mod.options || {};
const vuFile = fileURLToPath(new URL('./vu.mjs', import.meta.url));

function canonical(name) {
  return name.replace(/(^|-)([a-z])/g, (_, d, c) => d + c.toUpperCase());
}

// send makes one request for a VU.
async function send(req) {
  const began = performance.now();
  try {
    const res = await fetch(req.url, {
      method: req.method,
      headers: req.headers,
      body: req.body,
      redirect: 'manual',
      signal: AbortSignal.timeout(req.timeoutMs),
    });
    const body = await res.text();
    const headers = {};
    res.headers.forEach((v, k) => {
      headers[canonical(k)] = v;
    });
    return { status: res.status, headers, body, duration: performance.now() - began };
  } catch (e) {
    return { status: 0, headers: {}, body: '', duration: performance.now() - began, error: String(e.cause?.message || e.message) };
  }
}

// runWorker starts one worker thread and resolves with what it sent at
// the end ({ metrics, result }).
function runWorker(data) {
  const chan = new MessageChannel();
  const sig = new SharedArrayBuffer(4);
  const flag = new Int32Array(sig);
  const w = new Worker(vuFile, { workerData: { ...data, script, env, port: chan.port1, sig }, transferList: [chan.port1] });
  return new Promise((ok, fail) => {
    let done = null;
    w.on('message', (msg) => {
      if (msg.type === 'http') {
        send(msg.req).then((ans) => {
          chan.port2.postMessage(ans);
          Atomics.store(flag, 0, 1);
          Atomics.notify(flag, 0);
        });
      } else if (msg.type === 'done') {
        done = msg;
      }
    });
    w.on('error', fail);
    w.on('exit', (code) => {
      chan.port2.close();
      if (done) {
        ok(done);
      } else {
        fail(new Error(`VU ${data.vu} exited (${code}) before it finished`));
      }
    });
  });
}

// scenarios reads options into a list of { name, executor, vus,
// iterations, durationMs, startMs, exec, env }.
function scenarios(o) {
  if (o.scenarios) {
    return Object.entries(o.scenarios).map(([name, s]) => {
      if (!['shared-iterations', 'per-vu-iterations', 'constant-vus'].includes(s.executor)) {
        throw new Error(`k6 shim: executor ${s.executor} of scenario ${name} is not implemented`);
      }
      return {
        name,
        executor: s.executor,
        vus: s.vus ?? 1,
        iterations: s.executor === 'constant-vus' ? undefined : (s.iterations ?? 1),
        durationMs: durationMs(s.duration ?? s.maxDuration ?? (s.executor === 'constant-vus' ? '30s' : '10m')),
        startMs: durationMs(s.startTime ?? 0),
        exec: s.exec,
        env: s.env || {},
      };
    });
  }
  const vus = o.vus ?? 1;
  if (o.duration && o.iterations === undefined) {
    return [{ name: 'default', executor: 'constant-vus', vus, durationMs: durationMs(o.duration), startMs: 0, env: {} }];
  }
  return [{ name: 'default', executor: 'shared-iterations', vus, iterations: o.iterations ?? 1, durationMs: durationMs('10m'), startMs: 0, env: {} }];
}

async function runScenario(sc, data) {
  await new Promise((r) => setTimeout(r, sc.startMs));
  const shared = new SharedArrayBuffer(4);
  const runs = [];
  for (let i = 0; i < sc.vus; i++) {
    const counter = sc.executor === 'per-vu-iterations' ? new SharedArrayBuffer(4) : shared;
    runs.push(runWorker({
      role: 'vu', vu: vuSeq++, scenario: sc.name, exec: sc.exec, iterations: sc.iterations,
      counter, durationMs: sc.durationMs, data, envExtra: sc.env,
    }));
  }
  return Promise.all(runs);
}

let vuSeq = 1;
const began = Date.now();
const snapshots = [];
let crashed = false;
let setupData;
try {
  if (typeof mod.setup === 'function') {
    const r = await runWorker({ role: 'setup', vu: 0, counter: new SharedArrayBuffer(4) });
    snapshots.push(r.metrics);
    setupData = r.result;
  }
  const results = await Promise.all(scenarios(options).map((sc) => runScenario(sc, setupData)));
  for (const r of results.flat()) {
    snapshots.push(r.metrics);
  }
  if (typeof mod.teardown === 'function') {
    const r = await runWorker({ role: 'teardown', vu: 0, counter: new SharedArrayBuffer(4), data: setupData });
    snapshots.push(r.metrics);
  }
} catch (e) {
  console.error(`k6 shim: ${e && e.stack ? e.stack : e}`);
  crashed = true;
}
const elapsed = Date.now() - began;
const metrics = merge(snapshots);

// Thresholds.
const crossed = [];
const report = {};
for (const [key, list] of Object.entries(options.thresholds || {})) {
  const m = select(metrics, key) || { type: 'rate', samples: [] };
  const st = stats(m, elapsed);
  report[key] = {};
  for (const expr of thresholdList(list)) {
    const { got, ok } = evaluate(expr, st);
    report[key][expr] = { ok, value: got };
    if (!ok) {
      crossed.push(key);
    }
  }
}

// Summary, in the spirit of k6's end-of-test summary.
const fmt = (m, v) => (m.isTime ? `${v.toFixed(2)}ms` : `${Math.round(v * 100) / 100}`);
const out = [];
const exported = {};
for (const name of [...metrics.keys()].sort()) {
  const m = metrics.get(name);
  const st = stats(m, elapsed);
  let line;
  if (m.type === 'trend') {
    line = `avg=${fmt(m, st.avg)} min=${fmt(m, st.min)} med=${fmt(m, st.med)} max=${fmt(m, st.max)} p(90)=${fmt(m, st.p(90))} p(95)=${fmt(m, st.p(95))}`;
    exported[name] = { type: m.type, count: st.count, avg: st.avg, min: st.min, med: st.med, max: st.max, 'p(90)': st.p(90), 'p(95)': st.p(95), 'p(99)': st.p(99) };
  } else if (m.type === 'rate') {
    line = `${(st.rate * 100).toFixed(2)}% ✓ ${st.passes} ✗ ${st.fails}`;
    exported[name] = { type: m.type, rate: st.rate, passes: st.passes, fails: st.fails };
  } else if (m.type === 'counter') {
    line = `${st.count} ${st.rate.toFixed(2)}/s`;
    exported[name] = { type: m.type, count: st.count, rate: st.rate };
  } else {
    line = `${fmt(m, st.value)} min=${fmt(m, st.min)} max=${fmt(m, st.max)}`;
    exported[name] = { type: m.type, value: st.value, min: st.min, max: st.max };
  }
  const mark = report[name] ? (Object.values(report[name]).every((t) => t.ok) ? '✓ ' : '✗ ') : '  ';
  out.push(`   ${mark}${(name + ' ').padEnd(28, '.')}: ${line}`);
}
for (const [key, ts] of Object.entries(report)) {
  for (const [expr, t] of Object.entries(ts)) {
    out.push(`   ${t.ok ? '✓' : '✗'} threshold ${key}: ${expr} (observed ${Math.round(t.value * 1000) / 1000})`);
  }
}
console.log(`\n  k6 shim: ${script}, ${(elapsed / 1000).toFixed(1)}s\n\n${out.join('\n')}\n`);
if (summaryFile) {
  writeFileSync(summaryFile, JSON.stringify({ metrics: exported, thresholds: report, elapsed_ms: elapsed }, null, 2));
}
if (crashed) {
  process.exit(107);
}
if (crossed.length) {
  console.error(`ERRO thresholds on metrics '${[...new Set(crossed)].join("', '")}' have been crossed`);
  process.exit(99);
}
