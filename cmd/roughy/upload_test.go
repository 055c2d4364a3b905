package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roughy/ingest/tusclient"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).AddrPort().String()
}

// startTusd runs tusd v2 (the TUS reference server, file store) on
// loopback and returns its endpoint and upload directory.
func startTusd(t *testing.T) (endpoint, dir string) {
	t.Helper()
	bin, err := exec.LookPath("tusd")
	if err != nil {
		bin = "/root/go/bin/tusd"
		if _, err := os.Stat(bin); err != nil {
			t.Skip("tusd not installed (go install github.com/tus/tusd/v2/cmd/tusd@v2.9.1)")
		}
	}
	dir = t.TempDir()
	addr := freePort(t)
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "-host", host, "-port", port, "-upload-dir", dir, "-base-path", "/files/", "-disable-download")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Killed, so Wait's error is the kill itself.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("tusd log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tusd did not listen on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "http://" + addr + "/files/", dir
}

func randomFile(t *testing.T, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	p := filepath.Join(t.TempDir(), "clip.mp4")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, data
}

func testOptions(t *testing.T, endpoint string) uploadOptions {
	return uploadOptions{
		Endpoint: endpoint, Key: "rk_live_test", ChunkSize: 256 << 10,
		StateFile: filepath.Join(t.TempDir(), "uploads.json"), Retries: 5,
		BackoffBase: 10 * time.Millisecond, BackoffMax: 200 * time.Millisecond, Checksum: true,
	}
}

// tusdFile returns the bytes tusd stored for an upload URL.
func tusdFile(t *testing.T, dir, uploadURL string) []byte {
	t.Helper()
	id := uploadURL[strings.LastIndexByte(uploadURL, '/')+1:]
	b, err := os.ReadFile(filepath.Join(dir, id))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func stateEntries(t *testing.T, path string) map[string]stateEntry {
	t.Helper()
	m, err := stateFile{path: path}.load()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestUploadToTusd(t *testing.T) {
	endpoint, dir := startTusd(t)
	path, data := randomFile(t, 3<<20+123)
	opts := testOptions(t, endpoint)
	var logs bytes.Buffer
	res, err := runUpload(t.Context(), opts, path, &logs)
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	if res.Resumed != 0 || res.Asset != nil || res.AssetID == "" {
		t.Errorf("result %+v", res)
	}
	if got := tusdFile(t, dir, res.URL); !bytes.Equal(got, data) {
		t.Fatalf("tusd stored %d bytes, not the %d of the file", len(got), len(data))
	}
	if m := stateEntries(t, opts.StateFile); len(m) != 0 {
		t.Errorf("finished upload still in state file: %v", m)
	}
}

// TestUploadResumesAfterInterrupt stops an upload at about 40% (as Ctrl-C
// does) and checks that the next run continues from the server's offset.
func TestUploadResumesAfterInterrupt(t *testing.T) {
	endpoint, dir := startTusd(t)
	path, data := randomFile(t, 4<<20)
	opts := testOptions(t, endpoint)

	ctx, cancel := context.WithCancel(t.Context())
	opts.sent = func(n int64) {
		if n > int64(len(data))*4/10 {
			cancel()
		}
	}
	_, err := runUpload(ctx, opts, path, io.Discard)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v, want context.Canceled", err)
	}
	m := stateEntries(t, opts.StateFile)
	if len(m) != 1 {
		t.Fatalf("state file after interrupt: %v, want one entry", m)
	}
	var saved stateEntry
	for _, e := range m {
		saved = e
	}
	off, _, err := newClient(opts.Endpoint, opts.Key).Head(t.Context(), saved.URL)
	if err != nil {
		t.Fatal(err)
	}
	if off <= 0 || off >= int64(len(data)) {
		t.Fatalf("server offset after interrupt %d, want inside (0, %d)", off, len(data))
	}

	opts.sent = nil
	res, err := runUpload(t.Context(), opts, path, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// The server may still store the tail of the cut PATCH after our HEAD,
	// so the resume point is at or past what it said then.
	if res.URL != saved.URL || res.Resumed < off || res.Resumed >= int64(len(data)) {
		t.Fatalf("second run: url %s resumed at %d, want %s at %d or a bit later", res.URL, res.Resumed, saved.URL, off)
	}
	if got := tusdFile(t, dir, res.URL); !bytes.Equal(got, data) {
		t.Fatal("resumed upload's bytes differ from the file")
	}

	// A touched file is another version: a new upload, not a resume.
	if err := os.Chtimes(path, time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	res2, err := runUpload(t.Context(), opts, path, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res2.URL == res.URL || res2.Resumed != 0 {
		t.Fatalf("modified file resumed the old upload: %+v", res2)
	}
}

// faultyProxy sits in front of a real TUS server and breaks requests on a
// schedule: the n-th PATCH (1-based) gets the fault in faults[n].
type faultyProxy struct {
	t       *testing.T
	rp      *httputil.ReverseProxy
	mu      sync.Mutex
	patches int
	posts   int
	faults  map[int]string
	fired   []string
	badSum  []string
}

func (f *faultyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	var fault string
	switch r.Method {
	case http.MethodPost:
		f.posts++
		if f.posts == 1 {
			fault = "500"
		}
	case http.MethodPatch:
		f.patches++
		fault = f.faults[f.patches]
	}
	if fault != "" {
		f.fired = append(f.fired, r.Method+":"+fault)
	}
	f.mu.Unlock()

	if r.Method == http.MethodPatch {
		// Check the client's Upload-Checksum against the bytes it sent.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		sum := sha256.Sum256(body)
		if want := "sha256 " + base64.StdEncoding.EncodeToString(sum[:]); r.Header.Get("Upload-Checksum") != want {
			f.mu.Lock()
			f.badSum = append(f.badSum, r.Header.Get("Upload-Checksum"))
			f.mu.Unlock()
		}
		if fault == "drop" {
			// Forward half the body, then cut the client off: the server
			// keeps a prefix, the client must ask where to resume.
			half := body[:len(body)/2]
			r2 := r.Clone(r.Context())
			r2.Body = io.NopCloser(bytes.NewReader(half))
			r2.ContentLength = int64(len(half))
			r2.Header.Del("Upload-Checksum")
			f.rp.ServeHTTP(httptest.NewRecorder(), r2)
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
				}
			}
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	switch fault {
	case "500", "503":
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(map[string]int{"500": 500, "503": 503}[fault])
		_, _ = io.WriteString(w, `{"error":{"code":"storage_unavailable","message":"try again"}}`)
		return
	case "423":
		w.WriteHeader(http.StatusLocked)
		return
	case "460":
		w.WriteHeader(460)
		return
	}
	f.rp.ServeHTTP(w, r)
}

func TestUploadRetriesThroughFaults(t *testing.T) {
	endpoint, dir := startTusd(t)
	target, _ := url.Parse(endpoint)
	target.Path = ""
	fp := &faultyProxy{t: t, rp: httputil.NewSingleHostReverseProxy(target),
		faults: map[int]string{1: "503", 3: "423", 5: "drop", 8: "460", 9: "500"}}
	srv := httptest.NewServer(fp)
	defer srv.Close()

	path, data := randomFile(t, 2<<20+77)
	opts := testOptions(t, srv.URL+"/files/")
	var logs bytes.Buffer
	res, err := runUpload(t.Context(), opts, path, &logs)
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	// tusd's Location names its own host; the stored file is what counts.
	if got := tusdFile(t, dir, res.URL); !bytes.Equal(got, data) {
		t.Fatal("bytes differ after faults")
	}
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if len(fp.fired) != 6 {
		t.Errorf("faults fired %v, want all 6", fp.fired)
	}
	if len(fp.badSum) != 0 {
		t.Errorf("PATCHes with a wrong Upload-Checksum: %v", fp.badSum)
	}
}

func TestUploadGivesUpOnAuthError(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.Header().Set("WWW-Authenticate", "Bearer")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"code":"unauthorized","message":"unknown API key"}}`)
	}))
	defer srv.Close()
	path, _ := randomFile(t, 1000)
	_, err := runUpload(t.Context(), testOptions(t, srv.URL+"/api/v1/assets/upload-resumable"), path, io.Discard)
	he, ok := errors.AsType[*tusclient.StatusError](err)
	if !ok || he.Status != 401 || !strings.Contains(err.Error(), "unknown API key") {
		t.Fatalf("err %v, want the 401 with its message", err)
	}
	if calls.Load() != 1 {
		t.Fatalf("%d requests, want 1 (a 401 is not retried)", calls.Load())
	}
}

func TestUploadForgetsVanishedUpload(t *testing.T) {
	endpoint, dir := startTusd(t)
	path, data := randomFile(t, 300<<10)
	opts := testOptions(t, endpoint)
	fi, _ := os.Stat(path)
	abs, _ := filepath.Abs(path)
	fp := fingerprint(abs, fi.Size(), fi.ModTime(), endpoint)
	if err := (stateFile{opts.StateFile}).put(fp, stateEntry{URL: endpoint + "0123456789abcdef", AssetID: "x"}); err != nil {
		t.Fatal(err)
	}
	res, err := runUpload(t.Context(), opts, path, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Resumed != 0 || strings.HasSuffix(res.URL, "0123456789abcdef") {
		t.Fatalf("result %+v, want a fresh upload", res)
	}
	if got := tusdFile(t, dir, res.URL); !bytes.Equal(got, data) {
		t.Fatal("bytes differ")
	}
}

func TestGuessType(t *testing.T) {
	for _, tc := range []struct {
		name     string
		head     []byte
		ct, kind string
	}{
		{"a.mp4", nil, "video/mp4", "video"},
		{"A.MOV", nil, "video/quicktime", "video"},
		{"song.mp3", nil, "audio/mpeg", "audio"},
		{"take.WAV", nil, "audio/wav", "audio"},
		{"podcast.m4a", nil, "audio/mp4", "audio"},
		{"noext", []byte("ID3\x03\x00\x00\x00"), "audio/mpeg", "audio"},
		{"noext", []byte("\x1a\x45\xdf\xa3"), "video/webm", "video"},
		{"noext", []byte{0, 1, 2, 3}, "application/octet-stream", "video"},
	} {
		ct := guessContentType(tc.name, tc.head)
		if ct != tc.ct || assetType(ct) != tc.kind {
			t.Errorf("%s: %q/%s, want %q/%s", tc.name, ct, assetType(ct), tc.ct, tc.kind)
		}
	}
}
