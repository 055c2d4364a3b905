package browsere2e

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// flagValue is the value of a test binary flag ("" when unknown).
func flagValue(name string) string {
	if f := flag.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// makeClip renders a real MP4 of a few MB with ffmpeg, so that ffprobe
// finds a duration.
func makeClip(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "clip.mp4")
	cmd := exec.CommandContext(t.Context(), "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", "3",
		"-vf", "noise=alls=20:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "10", "-pix_fmt", "yuv420p", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, b)
	}
	return out
}

// TestUploadPage drives the page of GET / in headless Chromium as a person
// would: paste a key, choose a file, watch progress with rate and ETA,
// pause, reload the page, choose the same file again (it resumes the same
// upload from the server's offset), and see the asset: ready, its SHA-256,
// its duration once probed, a download link. A screenshot of the end is
// kept.
func TestUploadPage(t *testing.T) {
	if _, err := os.Stat(filepath.Join(repoRoot, "proxy/page/vendor/tus.min.js")); err != nil {
		t.Fatalf("the upload page's tus-js-client is not vendored (run scripts/setup-deps.sh before building): %v", err)
	}
	clip := makeClip(t)
	data, err := os.ReadFile(clip)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 3<<20 {
		t.Fatalf("clip has %d bytes, want at least 3 MiB for several chunks", len(data))
	}
	r := startRoughy(t, "*")
	c := startCDP(t)
	// 2 MB/s upstream: the upload takes seconds, so pausing lands mid-way
	// and the rate and ETA are real.
	c.call("page", "Network.enable", nil, nil)
	c.call("page", "Network.emulateNetworkConditions", map[string]any{
		"offline": false, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 2_000_000}, nil)
	c.call("page", "Page.enable", nil, nil)
	open := func() {
		c.waitFor("page loaded", `document.readyState === "complete" && document.getElementById("cred")`, 15*time.Second)
	}
	c.call("page", "Page.navigate", map[string]any{"url": r.URL + "/"}, nil)
	open()
	var hasTus bool
	c.eval(`typeof tus !== "undefined" && tus.isSupported`, &hasTus)
	if !hasTus {
		t.Fatalf("the page has no working tus-js-client")
	}
	c.eval(fmt.Sprintf(`(() => { const k = document.getElementById("cred"); k.value = %q; k.dispatchEvent(new Event("input"));
		const ch = document.getElementById("chunk"); ch.value = "0.5"; ch.dispatchEvent(new Event("input")); })()`, acmeKey), nil)
	c.setFile("#file", clip)

	// Pause once a third is sent.
	third := len(data) / 3
	c.waitFor("a third sent", fmt.Sprintf(`Number(document.getElementById("bar").dataset.sent || 0) >= %d`, third), 30*time.Second)
	var stats string
	c.eval(`document.getElementById("stats").textContent`, &stats)
	if !strings.Contains(stats, "/s") || !strings.Contains(stats, "ETA") || strings.Contains(stats, "ETA …") {
		t.Errorf("progress line %q: want a rate (…/s) and an ETA", stats)
	}
	c.eval(`document.getElementById("pause").click()`, nil)
	c.waitFor("paused", `document.body.dataset.state === "paused"`, 10*time.Second)
	var uploadURL string
	c.eval(`document.body.dataset.url`, &uploadURL)
	id := uploadURL[strings.LastIndex(uploadURL, "/")+1:]
	time.Sleep(300 * time.Millisecond)
	before := headOffset(t, r, uploadURL)
	if before <= 0 || before >= int64(len(data)) {
		t.Fatalf("server offset after pause: got %d, want between 0 and %d", before, len(data))
	}
	if a := r.Asset(t, id); a.State != "uploading" {
		t.Fatalf("asset while paused: got state %q, want uploading", a.State)
	}

	// Reload: the key is still there, the same file resumes the same upload.
	c.call("page", "Page.reload", map[string]any{"ignoreCache": true}, nil)
	time.Sleep(200 * time.Millisecond)
	open()
	var keyBack string
	c.eval(`document.getElementById("cred").value`, &keyBack)
	if keyBack != acmeKey {
		t.Errorf("key after reload: got %q, want the pasted key (sessionStorage)", keyBack)
	}
	c.setFile("#file", clip)
	c.waitFor("uploaded", `document.body.dataset.state === "done"`, 30*time.Second)
	var resumed, urlAfter string
	c.eval(`document.body.dataset.resumed || ""`, &resumed)
	c.eval(`document.body.dataset.url`, &urlAfter)
	if resumed != "1" || urlAfter != uploadURL {
		t.Errorf("after reload: resumed %q, upload URL %q; want the earlier upload %q resumed", resumed, urlAfter, uploadURL)
	}

	// The asset as the page shows it, duration included once probed.
	c.waitFor("asset probed", `document.getElementById("asset").dataset.duration`, 30*time.Second)
	var shown struct {
		State, SHA256, Duration, Download, Text string
	}
	c.eval(`(() => { const b = document.getElementById("asset"); return {State: b.dataset.state, SHA256: b.dataset.sha256,
		Duration: b.dataset.duration, Download: document.querySelector("#a-download a") ? document.querySelector("#a-download a").href : "",
		Text: b.innerText}; })()`, &shown)
	path := c.screenshot("upload-page")
	t.Logf("screenshot of the upload page: %s", path)
	want := sha256Hex(data)
	if shown.State != "ready" || shown.SHA256 != want || !strings.Contains(shown.Text, want) {
		t.Errorf("page shows state %q sha256 %q, want ready and %s (text: %q)", shown.State, shown.SHA256, want, shown.Text)
	}
	if d, err := strconv.ParseFloat(shown.Duration, 64); err != nil || d < 2.5 || d > 3.5 {
		t.Errorf("page shows duration %q, want about 3 s", shown.Duration)
	}
	resp, err := http.Get(shown.Download)
	if err != nil || resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(data)) {
		t.Errorf("download link %q: got %v %v, want 200 with %d bytes", shown.Download, resp, err, len(data))
	}
	if resp != nil {
		resp.Body.Close()
	}
	// The link's bytes, not only its length, are the file's.
	if got, err := download(t, shown.Download); err != nil {
		t.Errorf("download link %q: %v", shown.Download, err)
	} else if err := testsvc.SameBytes(got, data); err != nil {
		t.Errorf("download link %q: %v", shown.Download, err)
	}
	a := r.Asset(t, id)
	if a.State != "ready" || a.SHA256 != want {
		t.Errorf("asset from the API: got %q %q, want ready %s", a.State, a.SHA256, want)
	}
	checkDownload(t, a, data)
}

// headOffset HEADs an upload URL with the key.
func headOffset(t *testing.T, _ *roughy, u string) int64 {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodHead, u, nil)
	req.Header.Set("Authorization", "Bearer "+acmeKey)
	req.Header.Set("Tus-Resumable", "1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("HEAD %s: %v", u, err)
	}
	resp.Body.Close()
	n, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("HEAD %s: got %d offset %q", u, resp.StatusCode, resp.Header.Get("Upload-Offset"))
	}
	return n
}

// TestUploadPageDirectURL: the page with a direct upload URL pasted
// instead of a key uploads with no key and shows the asset it gets from
// GET on that URL.
func TestUploadPageDirectURL(t *testing.T) {
	r := startRoughy(t, "https://elsewhere.invalid")
	c := startCDP(t)
	d := r.mintDirect(t, r.URL)
	data := makeBytes(blobSize, 0x5eed0021)
	file := filepath.Join(t.TempDir(), "clip.bin")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	c.call("page", "Page.navigate", map[string]any{"url": r.URL + "/"}, nil)
	c.waitFor("page loaded", `document.readyState === "complete" && document.getElementById("cred")`, 15*time.Second)
	c.eval(fmt.Sprintf(`(() => { const k = document.getElementById("cred"); k.value = %q; k.dispatchEvent(new Event("input")); })()`, d.UploadURL), nil)
	c.setFile("#file", file)
	c.waitFor("asset shown", `document.getElementById("asset").dataset.state === "ready"`, 30*time.Second)
	var shown struct{ State, SHA256, URL string }
	c.eval(`({State: document.getElementById("asset").dataset.state, SHA256: document.getElementById("asset").dataset.sha256, URL: document.body.dataset.url})`, &shown)
	t.Logf("screenshot of the upload page: %s", c.screenshot("upload-page-direct"))
	if shown.State != "ready" || shown.SHA256 != sha256Hex(data) || shown.URL != d.UploadURL {
		t.Errorf("page shows %+v, want ready, sha256 %s, upload URL %s", shown, sha256Hex(data), d.UploadURL)
	}
	a := r.Asset(t, d.ID)
	if a.State != "ready" || a.SHA256 != sha256Hex(data) {
		t.Errorf("asset from the API: got %q %q, want ready %s", a.State, a.SHA256, sha256Hex(data))
	}
	checkDownload(t, a, data)
}
