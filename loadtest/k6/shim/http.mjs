// The k6/http module: synchronous requests (the main thread sends them)
// with k6's built-in metrics http_reqs, http_req_duration and
// http_req_failed (a status outside 200-399, or no answer).
import { call, record } from './state.mjs';
import { durationMs } from './duration.mjs';

function toBody(body) {
  if (body === null || body === undefined) {
    return null;
  }
  if (typeof body === 'string' || body instanceof ArrayBuffer) {
    return body;
  }
  if (ArrayBuffer.isView(body)) {
    return body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength);
  }
  if (typeof body === 'object') {
    return new URLSearchParams(body).toString();
  }
  return String(body);
}

export function request(method, url, body, params = {}) {
  method = method.toUpperCase();
  const headers = { ...(params.headers || {}) };
  const sent = toBody(body);
  const ans = call({
    type: 'http',
    req: { method, url: String(url), headers, body: sent, timeoutMs: durationMs(params.timeout ?? '60s') },
  });
  const tags = { method, url: String(url), name: String(url), status: String(ans.status), ...(params.tags || {}) };
  record('http_reqs', 'counter', 1, tags);
  record('http_req_duration', 'trend', ans.duration, tags, true);
  record('http_req_failed', 'rate', ans.status >= 200 && ans.status < 400 ? 0 : 1, tags);
  return {
    status: ans.status,
    headers: ans.headers,
    body: ans.body,
    error: ans.error || '',
    error_code: ans.error ? 1000 : 0,
    url: String(url),
    request: { method, url: String(url), headers, body: sent },
    timings: { duration: ans.duration },
    json() {
      return JSON.parse(ans.body);
    },
  };
}

export const get = (url, params) => request('GET', url, null, params);
export const head = (url, params) => request('HEAD', url, null, params);
export const options = (url, body, params) => request('OPTIONS', url, body, params);
export const post = (url, body, params) => request('POST', url, body, params);
export const put = (url, body, params) => request('PUT', url, body, params);
export const patch = (url, body, params) => request('PATCH', url, body, params);
export const del = (url, body, params) => request('DELETE', url, body, params);

export default { request, get, head, options, post, put, patch, del };
