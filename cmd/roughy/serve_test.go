package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/sessionstore/bolt"
	"github.com/roughy/ingest/tusclient"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// roughyBin builds the binary from this tree once per test run.
func roughyBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "roughy-bin-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "roughy")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// lockedBuffer is a bytes.Buffer safe for a writer goroutine and readers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// server is a running "roughy serve".
type server struct {
	cmd    *exec.Cmd
	addr   string
	stdout *lockedBuffer
	stderr *lockedBuffer
	exited chan error
}

// cleanEnv is the environment without ROUGHY_* variables, plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// startServe runs the binary's serve on a loopback port and waits for its
// "roughy listening on" line.
func startServe(t *testing.T, dataDir string, env []string, args ...string) *server {
	t.Helper()
	return startRoughy(t, env, "roughy listening on ",
		append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir}, args...)...)
}

// startRoughy runs the binary with args and waits for a stdout line
// starting with ready; the rest of that line becomes addr.
func startRoughy(t *testing.T, env []string, ready string, args ...string) *server {
	t.Helper()
	cmd := exec.Command(roughyBin(t), args...)
	cmd.Env = cleanEnv(env...)
	s := &server{cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = s.stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(s.stdout, line)
			if a, ok := strings.CutPrefix(line, ready); ok {
				listening <- a
			}
		}
		s.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			// Kill fails only if it already exited; exited says so either way.
			_ = cmd.Process.Kill()
			<-s.exited //nolint:errcheck // the kill's own error
		}
		if t.Failed() {
			t.Logf("roughy %s stderr:\n%s", args[0], s.stderr.String())
		}
	})
	select {
	case s.addr = <-listening:
	case err := <-s.exited:
		t.Fatalf("roughy %s exited: %v\n%s", args[0], err, s.stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("roughy %s not ready within 60s\n%s", args[0], s.stderr.String())
	}
	return s
}

// stop sends SIGTERM and checks a clean exit.
func (s *server) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		if err != nil {
			t.Fatalf("serve exit after SIGTERM: %v\n%s", err, s.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve still running 30s after SIGTERM")
	}
}

func (s *server) endpoint() string {
	return "http://" + s.addr + "/api/v1/assets/upload-resumable"
}

type assetJSON struct {
	ID              string  `json:"id"`
	State           string  `json:"state"`
	SizeBytes       *int64  `json:"size_bytes"`
	DurationSeconds *string `json:"duration_seconds"`
	SHA256          string  `json:"sha256"`
	ContentType     string  `json:"content_type"`
	Filename        string  `json:"filename"`
	Type            string  `json:"type"`
	DownloadURL     string  `json:"download_url"`
}

func getAsset(t *testing.T, s *server, key, id string) assetJSON {
	t.Helper()
	b, err := newClient(s.endpoint(), key).Asset(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	var a assetJSON
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("asset JSON %s: %v", b, err)
	}
	return a
}

// wantDownload fails unless asset id is ready and its download_url serves
// exactly data. The asset's sha256 is computed from the bytes as they
// passed the server and proves nothing about what storage holds; only the
// download does.
func wantDownload(t *testing.T, s *server, key, id string, data []byte) {
	t.Helper()
	a := getAsset(t, s, key, id)
	if a.State != "ready" || a.DownloadURL == "" {
		t.Fatalf("asset %s: state %q, download_url %q; want ready with a download_url", id, a.State, a.DownloadURL)
	}
	resp, err := http.Get(a.DownloadURL)
	if err != nil {
		t.Fatalf("asset %s: download: %v", id, err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("asset %s: download: HTTP %d, %v", id, resp.StatusCode, err)
	}
	if err := testsvc.SameBytes(got, data); err != nil {
		t.Fatalf("asset %s: download: %v", id, err)
	}
}

// readFile is the content of path.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// devKeyOf is the key serve wrote to dataDir/dev-api-key.
func devKeyOf(t *testing.T, dataDir string) string {
	t.Helper()
	return strings.TrimSpace(string(readFile(t, filepath.Join(dataDir, "dev-api-key"))))
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func makeMP4(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg not installed (apt-get install -y ffmpeg)")
	}
	out := filepath.Join(t.TempDir(), "clip.mp4")
	cmd := exec.CommandContext(t.Context(), "ffmpeg", "-v", "error", "-y",
		"-f", "lavfi", "-i", "testsrc=duration=2:size=160x120:rate=10",
		"-f", "lavfi", "-i", "sine=duration=2", "-shortest", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, b)
	}
	return out
}

// roughyCmd runs a non-serving subcommand of the binary.
func roughyCmd(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, roughyBin(t), args...)
	cmd.Env = cleanEnv(env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("roughy %v: %w\n%s", args, err, stderr.String())
	}
	return string(out), nil
}

// TestServeEndToEnd drives the real binary: dev key bootstrap, uploads
// with the first-party client (fresh, interrupted and resumed, non-media),
// ffprobe filling duration_seconds, the dead-letter list, SIGTERM, key
// management, and static keys from ROUGHY_API_KEYS on restart.
func TestServeEndToEnd(t *testing.T) {
	media := makeMP4(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	srv := startServe(t, dataDir, nil, "--probe-workers", "1")

	keyBytes, err := os.ReadFile(filepath.Join(dataDir, "dev-api-key"))
	if err != nil {
		t.Fatal(err)
	}
	devKey := strings.TrimSpace(string(keyBytes))
	if !strings.HasPrefix(devKey, apikey.Prefix) || !strings.Contains(srv.stdout.String(), devKey) {
		t.Fatalf("dev key %q not printed on stdout %q", devKey, srv.stdout.String())
	}
	if fi, err := os.Stat(filepath.Join(dataDir, "dev-api-key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("dev-api-key mode %v, %v; want 0600", fi.Mode(), err)
	}

	opts := testOptions(t, srv.endpoint())
	opts.Key = devKey
	opts.ChunkSize = 8 << 10

	// A non-media file first: with one worker it is probed before the
	// media file, so it is settled by the time the duration appears.
	text := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(text, []byte("these are notes, not a film\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	textOpts := opts
	textOpts.Type = "video"
	textRes, err := runUpload(t.Context(), textOpts, text, io.Discard)
	if err != nil {
		t.Fatal(err)
	}

	res, err := runUpload(t.Context(), opts, media, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var a assetJSON
	if err := json.Unmarshal(res.Asset, &a); err != nil {
		t.Fatalf("final JSON %s: %v", res.Asset, err)
	}
	fi, _ := os.Stat(media)
	if a.ID != res.AssetID || a.State != "ready" || a.SizeBytes == nil || *a.SizeBytes != fi.Size() ||
		a.SHA256 != fileSHA(t, media) || a.Type != "video" || a.ContentType != "video/mp4" || a.Filename != "clip.mp4" {
		t.Fatalf("final asset %s, want ready video/mp4 clip.mp4 of %d bytes with sha256 %s", res.Asset, fi.Size(), fileSHA(t, media))
	}
	wantDownload(t, srv, devKey, res.AssetID, readFile(t, media))
	wantDownload(t, srv, devKey, textRes.AssetID, readFile(t, text))

	deadline := time.Now().Add(30 * time.Second)
	for {
		a = getAsset(t, srv, devKey, res.AssetID)
		if a.DurationSeconds != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("duration_seconds still null 30s after the upload")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !regexp.MustCompile(`^\d+\.\d{3}$`).MatchString(*a.DurationSeconds) {
		t.Fatalf("duration_seconds %q, want 3 decimals", *a.DurationSeconds)
	}
	if d, _ := strconv.ParseFloat(*a.DurationSeconds, 64); d < 1.9 || d > 2.1 {
		t.Fatalf("duration_seconds %q, want about 2", *a.DurationSeconds)
	}

	// Interrupted at ~40%, then resumed by a second run.
	big, bigData := randomFile(t, 3<<20)
	bigOpts := opts
	bigOpts.ChunkSize = 256 << 10
	ctx, cancel := context.WithCancel(t.Context())
	bigOpts.sent = func(n int64) {
		if n > (3<<20)*4/10 {
			cancel()
		}
	}
	if _, err := runUpload(ctx, bigOpts, big, io.Discard); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted upload: %v", err)
	}
	bigOpts.sent = nil
	bigRes, err := runUpload(t.Context(), bigOpts, big, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if bigRes.Resumed <= 0 {
		t.Fatalf("second run started at %d, want a resume", bigRes.Resumed)
	}
	if got := getAsset(t, srv, devKey, bigRes.AssetID); got.State != "ready" || got.SHA256 != fileSHA(t, big) {
		t.Fatalf("resumed asset %+v, want ready with sha256 %s", got, fileSHA(t, big))
	}
	wantDownload(t, srv, devKey, bigRes.AssetID, bigData)

	if got := getAsset(t, srv, devKey, textRes.AssetID); got.DurationSeconds != nil {
		t.Fatalf("non-media duration_seconds %q, want null", *got.DurationSeconds)
	}
	srv.stop(t)

	// The non-media file's probe job is parked as dead.
	st, err := bolt.New(filepath.Join(dataDir, "roughy.db"))
	if err != nil {
		t.Fatal(err)
	}
	dead, err := st.DeadProbes(t.Context())
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The random "big" file is not media either: its job is parked too if
	// a worker got to it before the stop.
	var textDead bool
	for _, d := range dead {
		switch {
		case d.AssetID == textRes.AssetID && strings.Contains(d.Reason, "Invalid data"):
			textDead = true
		case d.AssetID == bigRes.AssetID:
		default:
			t.Errorf("unexpected dead probe %+v", d)
		}
	}
	if !textDead {
		t.Fatalf("dead probes %+v, want the text file's with ffprobe's reason", dead)
	}

	// Key management on the same data dir.
	dd := []string{"--data-dir", dataDir}
	secret, err := roughyCmd(t, nil, append([]string{"keys", "create", "--account", "acme"}, dd...)...)
	if err != nil {
		t.Fatal(err)
	}
	secret = strings.TrimSpace(secret)
	acmeID := apikey.Record("acme", secret).ID
	list, err := roughyCmd(t, []string{"ROUGHY_DATA_DIR=" + dataDir}, "keys", "list")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list, acmeID) || !strings.Contains(list, "dev") || strings.Contains(list, secret) {
		t.Fatalf("keys list:\n%s\nwant acme's %s and dev, never a secret", list, acmeID)
	}
	if _, err := roughyCmd(t, nil, append([]string{"keys", "revoke", acmeID}, dd...)...); err != nil {
		t.Fatal(err)
	}
	list, _ = roughyCmd(t, nil, append([]string{"keys", "list"}, dd...)...)
	if !regexp.MustCompile(regexp.QuoteMeta(acmeID) + `.*true`).MatchString(list) {
		t.Fatalf("keys list after revoke:\n%s", list)
	}
	if _, err := roughyCmd(t, nil, append([]string{"keys", "revoke", "key_nope"}, dd...)...); err == nil {
		t.Fatal("revoking an unknown key succeeded")
	}

	// Restart with a static key from the environment: no new dev key,
	// the revoked key is refused, the static and dev keys work.
	const static = "rk_live_staticglobexkey0000000000"
	srv = startServe(t, dataDir, []string{"ROUGHY_API_KEYS=globex=" + static, "ROUGHY_PROBE_WORKERS=0"})
	if strings.Contains(srv.stdout.String(), "dev API key") {
		t.Fatalf("second start printed a new dev key: %s", srv.stdout.String())
	}
	small, smallData := randomFile(t, 1000)
	for _, tc := range []struct {
		key    string
		status int
	}{{secret, 401}, {static, 0}, {devKey, 0}} {
		o := opts
		o.Endpoint = srv.endpoint()
		o.Key = tc.key
		res, err := runUpload(t.Context(), o, small, io.Discard)
		he, _ := errors.AsType[*tusclient.StatusError](err)
		switch {
		case tc.status == 0 && err != nil:
			t.Errorf("key %s…: %v", tc.key[:12], err)
		case tc.status != 0 && (he == nil || he.Status != tc.status):
			t.Errorf("key %s…: %v, want HTTP %d", tc.key[:12], err, tc.status)
		case tc.status == 0:
			wantDownload(t, srv, tc.key, res.AssetID, smallData)
		}
	}
	resp, err := http.Get("http://" + srv.addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	srv.stop(t)
}

// TestUploadCommand runs "roughy upload" as a user would, with the key
// read from the data dir's dev-api-key.
func TestUploadCommand(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	srv := startServe(t, dataDir, nil, "--probe-workers", "0")
	file, data := randomFile(t, 200<<10)
	out, err := roughyCmd(t, []string{"ROUGHY_ENDPOINT=" + srv.endpoint()},
		"upload", file, "--data-dir", dataDir, "--chunk-size", "64KiB", "--state-file", filepath.Join(t.TempDir(), "s.json"))
	if err != nil {
		t.Fatal(err)
	}
	id, body, _ := strings.Cut(out, "\n")
	var a assetJSON
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatalf("upload output %q: %v", out, err)
	}
	if a.ID != id || a.State != "ready" || a.SHA256 != fileSHA(t, file) {
		t.Fatalf("upload printed %q", out)
	}
	wantDownload(t, srv, devKeyOf(t, dataDir), id, data)
	srv.stop(t)
}

// TestUploadCommandInterruptAndResume sends SIGINT to "roughy upload"
// mid-way (each PATCH is slowed down by a proxy so there is a middle),
// then runs the same command again: it must resume, not start over.
func TestUploadCommandInterruptAndResume(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	srv := startServe(t, dataDir, nil, "--probe-workers", "0")
	target, _ := url.Parse("http://" + srv.addr)
	rp := httputil.NewSingleHostReverseProxy(target)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch {
			time.Sleep(50 * time.Millisecond)
		}
		rp.ServeHTTP(w, r)
	}))
	defer slow.Close()

	file, data := randomFile(t, 4<<20)
	state := filepath.Join(t.TempDir(), "uploads.json")
	args := []string{"upload", file, "--endpoint", slow.URL + "/api/v1/assets/upload-resumable",
		"--data-dir", dataDir, "--chunk-size", "64KiB", "--state-file", state}

	cmd := exec.Command(roughyBin(t), args...)
	cmd.Env = cleanEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) == 10 { // ten chunks acknowledged
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = cmd.Wait()
	if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != 130 {
		t.Fatalf("interrupted upload: %v, want exit 130; stderr:\n%s", err, strings.Join(lines, "\n"))
	}
	if !strings.Contains(strings.Join(lines, "\n"), "run the same command again") {
		t.Errorf("no resume hint in:\n%s", strings.Join(lines, "\n"))
	}

	cmd = exec.Command(roughyBin(t), args...)
	cmd.Env = cleanEnv()
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, errb.String())
	}
	m := regexp.MustCompile(`resuming \S+ at (\d+) of`).FindStringSubmatch(errb.String())
	if m == nil {
		t.Fatalf("second run did not resume:\n%s", errb.String())
	}
	if off, _ := strconv.Atoi(m[1]); off < 10*64<<10 || off >= len(data) {
		t.Fatalf("resumed at %d, want at least the 10 acknowledged chunks", off)
	}
	_, body, _ := strings.Cut(string(out), "\n")
	var a assetJSON
	if err := json.Unmarshal([]byte(body), &a); err != nil || a.SHA256 != fileSHA(t, file) || a.State != "ready" {
		t.Fatalf("final output %q (%v), want ready with sha256 %s", out, err, fileSHA(t, file))
	}
	wantDownload(t, srv, devKeyOf(t, dataDir), a.ID, data)
	srv.stop(t)
}

// TestUploadChecksumAgainstServe damages the body of one PATCH on the way
// (the Upload-Checksum header stays the client's): the real server must
// refuse it with 460 without moving the offset, and the client must send
// the chunk again and finish with the right bytes.
func TestUploadChecksumAgainstServe(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	srv := startServe(t, dataDir, nil, "--probe-workers", "0")
	target, _ := url.Parse("http://" + srv.addr)
	var patches, got460 atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.StatusCode == 460 {
			got460.Add(1)
		}
		return nil
	}
	corrupt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch && patches.Add(1) == 2 {
			body, _ := io.ReadAll(r.Body)
			body[len(body)/2] ^= 0xff
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		rp.ServeHTTP(w, r)
	}))
	defer corrupt.Close()

	file, data := randomFile(t, 1<<20)
	key, err := os.ReadFile(filepath.Join(dataDir, "dev-api-key"))
	if err != nil {
		t.Fatal(err)
	}
	opts := testOptions(t, corrupt.URL+"/api/v1/assets/upload-resumable")
	opts.Key = strings.TrimSpace(string(key))
	res, err := runUpload(t.Context(), opts, file, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got460.Load() != 1 {
		t.Fatalf("server answered 460 %d times, want once", got460.Load())
	}
	a := getAsset(t, srv, opts.Key, res.AssetID)
	if a.State != "ready" || a.SHA256 != fileSHA(t, file) {
		t.Fatalf("asset %+v, want ready with sha256 %s", a, fileSHA(t, file))
	}
	wantDownload(t, srv, opts.Key, res.AssetID, data)
	srv.stop(t)
}

// TestServeDrainsOnSIGTERM sends SIGTERM while a PATCH body is still
// streaming: the PATCH must finish with 204 and the process exit 0.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	srv := startServe(t, dataDir, nil, "--probe-workers", "0", "--shutdown-timeout", "20s")
	key, err := os.ReadFile(filepath.Join(dataDir, "dev-api-key"))
	if err != nil {
		t.Fatal(err)
	}
	cl := newClient(srv.endpoint(), strings.TrimSpace(string(key)))
	cl.Metadata = [][2]string{{"type", "video"}}
	const size = 1 << 20
	cr, err := cl.Create(t.Context(), size)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 31)
	}
	pr, pw := io.Pipe()
	req, _ := cl.NewRequest(t.Context(), http.MethodPatch, cr.URL, pr)
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", "0")
	type answer struct {
		status int
		offset string
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := cl.HTTP.Do(req)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		resp.Body.Close()
		answered <- answer{status: resp.StatusCode, offset: resp.Header.Get("Upload-Offset")}
	}()
	if _, err := pw.Write(data[:size/2]); err != nil {
		t.Fatal(err)
	}
	// Let the server dispatch the request to its handler first: a request
	// whose handler has not started yet when the signal lands is not "in
	// flight" for the drain.
	time.Sleep(300 * time.Millisecond)
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	select {
	case err := <-srv.exited:
		t.Fatalf("serve exited with a PATCH in flight: %v", err)
	default:
	}
	if _, err := pw.Write(data[size/2:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	a := <-answered
	if a.err != nil || a.status != http.StatusNoContent || a.offset != strconv.Itoa(size) {
		t.Fatalf("in-flight PATCH: %+v, want 204 at offset %d", a, size)
	}
	select {
	case err := <-srv.exited:
		if err != nil {
			t.Fatalf("exit after drain: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not exit after the drain")
	}
	got, err := os.ReadFile(filepath.Join(dataDir, "uploads", cr.AssetID()))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored bytes: %d, %v; want the %d sent", len(got), err, size)
	}
}
