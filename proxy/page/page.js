// page.js is the upload page of GET /: no build step, tus-js-client from
// /page/tus.min.js (vendored at build time, see README "Upload page").
//
// The credential is an API key or a direct upload URL. It is kept in
// sessionStorage (this tab only, gone when the tab closes) so that a
// reload can resume; tus-js-client keeps the upload URL of each file in
// localStorage (its fingerprint: the file and the endpoint), which is
// what makes a reload resumable once the same file is dropped again.
// The page's state is mirrored in data- attributes for the browser test.
"use strict";

const TUS_PATH = "/api/v1/assets/upload-resumable";
const $ = (id) => document.getElementById(id);
const cred = $("cred");
const chunkIn = $("chunk");
const drop = $("drop");
const fileIn = $("file");
const bar = $("bar");
const stats = $("stats");
const pauseBtn = $("pause");
const message = $("message");

let upload = null;
let running = false;
let meter = null;

cred.value = sessionStorage.getItem("roughy.cred") || "";
chunkIn.value = sessionStorage.getItem("roughy.chunk") || chunkIn.value;
cred.addEventListener("input", () => sessionStorage.setItem("roughy.cred", cred.value.trim()));
chunkIn.addEventListener("input", () => sessionStorage.setItem("roughy.chunk", chunkIn.value));

function setState(s) { document.body.dataset.state = s; }

function say(text, isError) {
  message.textContent = text;
  message.className = isError ? "error" : "";
}

// credential tells a direct upload URL from an API key.
function credential() {
  const v = cred.value.trim();
  if (/^https?:\/\//i.test(v)) return { direct: v };
  return v ? { key: v } : null;
}

function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}

function fmtTime(s) {
  if (s === null || !isFinite(s)) return "…";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
  return (h ? h + " h " : "") + (h || m ? m + " min " : "") + sec + " s";
}

// Meter smooths the rate over progress events (exponential average over
// windows of at least 250 ms), so the ETA does not jump with every event.
class Meter {
  constructor() { this.t = null; this.sent = 0; this.bps = 0; }
  add(sent) {
    const now = performance.now();
    if (this.t === null || sent < this.sent) { this.t = now; this.sent = sent; return; }
    const dt = now - this.t;
    if (dt < 250) return;
    const inst = (sent - this.sent) * 1000 / dt;
    this.bps = this.bps ? 0.7 * this.bps + 0.3 * inst : inst;
    this.t = now;
    this.sent = sent;
  }
}

function onProgress(sent, total) {
  document.body.dataset.url = upload.url || "";
  meter.add(sent);
  bar.max = total || 1;
  bar.value = sent;
  bar.dataset.sent = String(sent);
  const pct = total ? (100 * sent / total).toFixed(1) : "0.0";
  const eta = meter.bps > 0 ? (total - sent) / meter.bps : null;
  stats.textContent = pct + " % · " + fmtBytes(sent) + " of " + fmtBytes(total) +
    " · " + (meter.bps > 0 ? fmtBytes(meter.bps) + "/s" : "…") + " · ETA " + fmtTime(eta);
}

async function start(file) {
  const c = credential();
  if (!c) { say("Paste an API key or a direct upload URL first.", true); return; }
  if (typeof tus === "undefined") {
    say("tus-js-client is missing from this server's build (run scripts/setup-deps.sh, then build again).", true);
    return;
  }
  if (upload && running) await upload.abort();
  $("asset").hidden = true;
  $("progress").hidden = false;
  $("name").textContent = file.name + " (" + fmtBytes(file.size) + ")";
  const metadata = { filename: file.name };
  if (file.type) metadata.content_type = file.type;
  if (c.key) {
    // A direct upload URL's grant sets the type; with a key the page does.
    metadata.type = file.type.startsWith("audio/") ? "audio" : "video";
  }
  const chunkMiB = Math.min(64, Math.max(1 / 16, Number(chunkIn.value) || 50));
  meter = new Meter();
  upload = new tus.Upload(file, {
    endpoint: c.direct || location.origin + TUS_PATH,
    headers: c.key ? { Authorization: "Bearer " + c.key } : {},
    metadata,
    chunkSize: Math.floor(chunkMiB * 1024 * 1024),
    retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
    removeFingerprintOnSuccess: true,
    onProgress,
    onSuccess: () => {
      running = false;
      pauseBtn.disabled = true;
      setState("done");
      say("Uploaded.");
      showAsset(c).catch((err) => say("Could not load the asset: " + err.message, true));
    },
    onError: (err) => {
      running = false;
      pauseBtn.textContent = "Retry";
      setState("error");
      say("Upload failed: " + (err && err.message || err), true);
    },
  });
  const previous = await upload.findPreviousUploads();
  if (previous.length > 0) {
    upload.resumeFromPreviousUpload(previous[0]);
    say("Resuming an earlier upload of this file.");
    document.body.dataset.resumed = "1";
  } else {
    say("Uploading.");
  }
  upload.start();
  running = true;
  setState("uploading");
  pauseBtn.disabled = false;
  pauseBtn.textContent = "Pause";
}

pauseBtn.addEventListener("click", async () => {
  if (!upload) return;
  if (running) {
    running = false;
    await upload.abort();
    pauseBtn.textContent = "Resume";
    setState("paused");
    say("Paused. Resume here, or reload the page and drop the same file.");
  } else {
    meter = new Meter();
    upload.start();
    running = true;
    pauseBtn.textContent = "Pause";
    setState("uploading");
    say("Uploading.");
  }
});

fileIn.addEventListener("change", () => { if (fileIn.files[0]) start(fileIn.files[0]); });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files[0]) start(e.dataTransfer.files[0]);
});

// showAsset shows the asset, polling until ffprobe gave its duration (or
// 20 s passed: non-media never gets one). With a key it asks the assets
// API; with a direct upload URL, GET on that URL answers its asset.
async function showAsset(c) {
  const url = c.direct ? upload.url : location.origin + "/api/v1/assets/" + upload.url.split("/").pop();
  const headers = c.key ? { Authorization: "Bearer " + c.key } : {};
  const box = $("asset");
  box.hidden = false;
  for (let i = 0; i < 20; i++) {
    const r = await fetch(url, { headers, cache: "no-store" });
    const a = await r.json();
    if (!r.ok) throw new Error(a.error && a.error.message || "HTTP " + r.status);
    $("a-id").textContent = a.id;
    $("a-state").textContent = a.state;
    $("a-size").textContent = a.size_bytes === null ? "unknown" : fmtBytes(a.size_bytes) + " (" + a.size_bytes + " bytes)";
    $("a-sha256").textContent = a.sha256 || "";
    $("a-duration").textContent = a.duration_seconds === null ? "not known yet (probing)" : a.duration_seconds + " s";
    const dl = $("a-download");
    dl.textContent = "";
    if (a.download_url) {
      const link = document.createElement("a");
      link.href = a.download_url;
      link.textContent = "download";
      link.rel = "noopener";
      dl.appendChild(link);
    }
    box.dataset.state = a.state;
    box.dataset.sha256 = a.sha256 || "";
    box.dataset.duration = a.duration_seconds || "";
    box.dataset.download = a.download_url || "";
    if (a.state === "ready" && a.duration_seconds !== null) break;
    await new Promise((res) => setTimeout(res, 1000));
  }
  if (!box.dataset.duration) $("a-duration").textContent = "none (not media, or not probed yet)";
  box.dataset.final = "1";
}
