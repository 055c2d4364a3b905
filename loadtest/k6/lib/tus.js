// TUS helpers and settings shared by the scripts of this directory. Every
// setting comes from __ENV (k6 run -e NAME=value, or the environment).
import http from 'k6/http';
import { check } from 'k6';
import { Trend, Counter, Rate } from 'k6/metrics';

function num(v, dflt) {
  return v === undefined || v === '' ? dflt : Number(v);
}

// bytes reads "8MiB", "512KiB" or a plain number.
export function bytes(v) {
  const m = /^(\d+)\s*(KiB|MiB|GiB)?$/.exec(String(v).trim());
  if (!m) {
    throw new Error(`bad size ${v}`);
  }
  const unit = { KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30 };
  return Number(m[1]) * (m[2] ? unit[m[2]] : 1);
}

export const cfg = {
  base: (__ENV.ROUGHY_URL || 'http://127.0.0.1:8080').replace(/\/$/, ''),
  // A comma list spreads the VUs over several accounts (Roughy caps the
  // bodies one account streams to a node, --max-patches-per-account).
  keys: (__ENV.ROUGHY_KEYS || __ENV.ROUGHY_KEY || '').split(',').filter((k) => k !== ''),
  size: bytes(__ENV.UPLOAD_SIZE || '8MiB'),
  chunk: bytes(__ENV.CHUNK_SIZE || '2MiB'),
  vus: num(__ENV.VUS, 4),
  iterations: num(__ENV.ITERATIONS, 8),
  p95PatchMs: num(__ENV.P95_PATCH_MS, 2000),
  maxErrorRate: num(__ENV.MAX_ERROR_RATE, 0.01),
};

export const tusPath = '/api/v1/assets/upload-resumable';

// Custom metrics the thresholds read.
export const patchDuration = new Trend('tus_patch_duration', true);
export const uploadErrors = new Rate('tus_upload_errors');
export const bytesAcked = new Counter('tus_bytes_acked');

// thresholds: p95 PATCH latency, share of failed uploads, and checks.
export function thresholds() {
  return {
    tus_patch_duration: [`p(95)<${cfg.p95PatchMs}`],
    tus_upload_errors: [`rate<=${cfg.maxErrorRate}`],
    checks: [`rate>=${1 - cfg.maxErrorRate}`],
  };
}

// scriptOptions is a script's options: one shared-iterations scenario of
// VUS virtual users and ITERATIONS uploads, with the thresholds.
export function scriptOptions(name) {
  return {
    scenarios: {
      [name]: { executor: 'shared-iterations', vus: cfg.vus, iterations: cfg.iterations, maxDuration: '30m' },
    },
    thresholds: thresholds(),
  };
}

// begin makes this iteration's bytes and creates its upload; loc is ''
// (and the upload counted as failed) when the POST failed.
export function begin() {
  const data = payload(cfg.size);
  const loc = create(cfg.size);
  if (!loc) {
    uploadErrors.add(true);
  }
  return { data, loc };
}

export function headers(extra) {
  const h = { 'Tus-Resumable': '1.0.0', ...extra };
  if (cfg.keys.length > 0) {
    h.Authorization = `Bearer ${cfg.keys[(__VU - 1) % cfg.keys.length]}`;
  }
  return h;
}

// payload is size pseudo-random bytes, different for every VU and
// iteration, so that no two assets are alike.
export function payload(size) {
  const buf = new ArrayBuffer(size);
  const words = new Uint32Array(buf, 0, size >> 2);
  let x = (__VU * 2654435761 + __ITER * 40503 + 1) >>> 0;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return buf;
}

// create POSTs an upload of size bytes; it returns the upload URL, or ''.
export function create(size) {
  const res = http.post(`${cfg.base}${tusPath}`, null, {
    headers: headers({ 'Upload-Length': String(size), 'Upload-Metadata': `type dmlkZW8=,filename ${b64name()}` }),
    tags: { name: 'create' },
  });
  const ok = check(res, {
    'POST 201': (r) => r.status === 201,
    'POST Location': (r) => !!r.headers.Location,
  });
  if (!ok) {
    return '';
  }
  const loc = res.headers.Location;
  return loc.startsWith('http') ? loc : `${cfg.base}${loc}`;
}

function b64name() {
  // "k6.bin"
  return 'azYuYmlu';
}

// patch sends data[off:off+n] at off; extra params (a timeout) are added.
export function patch(loc, data, off, n, extra = {}) {
  const res = http.patch(loc, data.slice(off, off + n), {
    headers: headers({ 'Upload-Offset': String(off), 'Content-Type': 'application/offset+octet-stream' }),
    tags: { name: 'patch' },
    ...extra,
  });
  if (res.status === 204) {
    patchDuration.add(res.timings.duration);
  }
  return res;
}

// head answers the server's offset (-1 unless 200).
export function head(loc) {
  const res = http.head(loc, { headers: headers(), tags: { name: 'head' } });
  return res.status === 200 ? Number(res.headers['Upload-Offset']) : -1;
}

// remove DELETEs the upload and checks that it is gone.
export function remove(loc) {
  const res = http.del(loc, null, { headers: headers(), tags: { name: 'delete' } });
  const gone = http.head(loc, { headers: headers(), tags: { name: 'head' } });
  return check(res, {
    'DELETE 204': (r) => r.status === 204,
    'HEAD after DELETE 404/410': () => gone.status === 404 || gone.status === 410,
  });
}
