// Exercises the k6 shim's semantics for TestK6ShimSemantics: scenarios of
// two executors running side by side, __VU/__ITER, setup data, sleep,
// custom metrics and thresholds on tag-filtered submetrics.
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter, Gauge, Rate, Trend } from 'k6/metrics';

const perVU = new Counter('per_vu_iterations');
const vuIDs = new Trend('vu_ids');
const odd = new Rate('odd_iters');
const last = new Gauge('last_iter');

export const options = {
  scenarios: {
    a: { executor: 'per-vu-iterations', vus: 3, iterations: 2, exec: 'each' },
    b: { executor: 'shared-iterations', vus: 2, iterations: 5, exec: 'shared', env: { WHO: 'b' } },
  },
  thresholds: {
    'iterations{scenario:a}': ['count==6'],
    'iterations{scenario:b}': ['count==5'],
    per_vu_iterations: ['count==6'],
    'http_req_duration{name:health}': ['max<60000'],
    'http_reqs{status:200}': ['count==5'],
    checks: ['rate==1'],
    vu_ids: ['min>=1', 'max<=5'],
  },
};

export function setup() {
  return { health: `${__ENV.ROUGHY_URL}/healthz` };
}

export function each() {
  perVU.add(1, { vu: String(__VU) });
  vuIDs.add(__VU);
  odd.add(__ITER % 2 === 1);
  last.add(__ITER);
  sleep(0.01);
}

export function shared(data) {
  const res = http.get(data.health, { tags: { name: 'health' } });
  check(res, { 'healthz 200': (r) => r.status === 200, 'env per scenario': () => __ENV.WHO === 'b' });
  vuIDs.add(__VU);
}
