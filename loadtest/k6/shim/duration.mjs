// durationMs reads a k6 duration ("1m30s", "500ms", "2s") or a number of
// milliseconds.
export function durationMs(v) {
  if (typeof v === 'number') {
    return v;
  }
  const s = String(v).trim();
  if (/^\d+(\.\d+)?$/.test(s)) {
    return Number(s);
  }
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  const unit = { ms: 1, s: 1000, m: 60000, h: 3600000 };
  let total = 0;
  let seen = '';
  for (const m of s.matchAll(re)) {
    total += Number(m[1]) * unit[m[2]];
    seen += m[0];
  }
  if (seen !== s) {
    throw new Error(`k6 shim: bad duration ${JSON.stringify(v)}`);
  }
  return total;
}
