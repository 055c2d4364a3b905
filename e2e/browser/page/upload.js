// upload.js drives tus-js-client in the browser for the Go tests of package
// browsere2e. Parameters come from the query string; the outcome is POSTed
// as JSON to /result on the page's own origin (no CORS involved there).
//
//   endpoint  TUS creation URL (another origin)
//   key       API key, sent as "Authorization: Bearer <key>" (empty: none)
//   mode      "upload" | "resume" | "denied"
//   size      blob size in bytes; chunk  chunkSize in bytes
//   seed      PRNG seed; the Go test generates the same bytes
"use strict";

const q = new URLSearchParams(location.search);
const endpoint = q.get("endpoint");
const key = q.get("key");
const mode = q.get("mode");
const size = Number(q.get("size"));
const chunk = Number(q.get("chunk"));
const seed = Number(q.get("seed")) >>> 0;

const logEl = document.getElementById("log");
function log(msg) {
  logEl.textContent += msg + "\n";
}

// Same generator as the Go side (xorshift32, little-endian words).
function makeBytes(n, s) {
  const buf = new Uint8Array(n);
  let x = s || 1;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    for (let j = 0; j < 4 && i + j < n; j++) buf[i + j] = (x >>> (8 * j)) & 0xff;
  }
  return buf;
}

function hex(buf) {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function report(result) {
  log("result " + JSON.stringify(result));
  await fetch("/result", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(result) });
}

// options builds tus.Upload options; events are collected into ev.
function options(ev, extra) {
  return Object.assign({
    endpoint: endpoint,
    chunkSize: chunk,
    retryDelays: mode === "denied" ? [] : [0, 300],
    // No key at all for a direct upload URL (the token is in the URL).
    headers: key ? { Authorization: "Bearer " + key } : {},
    metadata: { filename: "browser-" + mode + ".mp4", filetype: "video/mp4", type: "video" },
    onAfterResponse(req, res) {
      ev.responses.push({
        method: req.getMethod(),
        status: res.getStatus(),
        offset: res.getHeader("Upload-Offset") || null,
        location: res.getHeader("Location") || null,
      });
    },
  }, extra);
}

function run(upload, ev) {
  return new Promise((resolve) => {
    upload.options.onSuccess = () => resolve({ ok: true });
    upload.options.onError = (err) => resolve({ ok: false, error: String(err && err.message || err) });
    upload.start();
  });
}

async function main() {
  const bytes = makeBytes(size, seed);
  const blob = new Blob([bytes], { type: "video/mp4" });
  const sha256 = hex(await crypto.subtle.digest("SHA-256", bytes));
  const out = { mode, size, sha256, tus: { isSupported: tus.isSupported } };
  const ev = { responses: [] };

  if (mode === "upload" || mode === "denied") {
    const up = new tus.Upload(blob, options(ev, {}));
    const r = await run(up, ev);
    Object.assign(out, r, { url: up.url, responses: ev.responses });
    return report(out);
  }

  if (mode === "resume") {
    // First pass: abort once at least one chunk was accepted.
    let aborted = false;
    const first = await new Promise((resolve) => {
      const up = new tus.Upload(blob, options(ev, {
        onChunkComplete(_chunkSize, accepted, total) {
          if (!aborted && accepted >= chunk && accepted < total) {
            aborted = true;
            up.abort().then(() => resolve({ aborted: true, accepted, url: up.url }));
          }
        },
        onSuccess() { resolve({ aborted: false, error: "finished before abort" }); },
        onError(err) { resolve({ aborted: false, error: String(err && err.message || err) }); },
      }));
      up.start();
    });
    out.first = first;
    out.firstResponses = ev.responses;
    if (!first.aborted) {
      return report(Object.assign(out, { ok: false, error: "first pass: " + first.error }));
    }
    // Second pass: a new Upload object finds the stored URL and resumes.
    const ev2 = { responses: [] };
    const up2 = new tus.Upload(blob, options(ev2, {}));
    const previous = await up2.findPreviousUploads();
    out.previousCount = previous.length;
    if (previous.length === 0) {
      return report(Object.assign(out, { ok: false, error: "findPreviousUploads found nothing" }));
    }
    up2.resumeFromPreviousUpload(previous[0]);
    const r = await run(up2, ev2);
    Object.assign(out, r, { url: up2.url, responses: ev2.responses });
    return report(out);
  }
  return report({ ok: false, error: "unknown mode " + mode });
}

main().catch((err) => report({ ok: false, error: "page: " + String(err && err.stack || err) }));
