package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// Static keys every server of this suite is started with (ROUGHY_API_KEYS).
const (
	acmeKey    = "rk_live_acmekeyacmekeyacmekeyacmekey0001"
	globexKey  = "rk_live_globexkeyglobexkeyglobexkey00002"
	staticKeys = "acme=" + acmeKey + ",globex=" + globexKey

	tusPath     = "/api/v1/assets/upload-resumable"
	maxPatch    = 64 << 20
	tusMaxSize  = 53687091200
	httpTimeout = 2 * time.Minute
)

// roughyBin is the binary TestMain built; repoRoot the module root.
var (
	roughyBin string
	repoRoot  string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	repoRoot = root
	bin, cleanup, err := testsvc.BuildRoughy()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer cleanup()
	roughyBin = bin
	return m.Run()
}

// server is one running `roughy serve` process; Restart starts it again
// on the same data dir (and a new port).
type server struct {
	*testsvc.Roughy
	t       *testing.T
	DataDir string
	bin     string // the command run instead of roughyBin (a wrapper)
	args    []string
	env     []string
	wrap    []string
	tls     *tls.Config // the client side of --tls-cert (nil: plain HTTP)
	log     serverLog
}

// serverLog is the process's output, for failure logs and log checks.
type serverLog struct{ b *testsvc.LogBuffer }

func (l serverLog) tail(n int) string { return l.b.Tail(n) }

// serverOpt tunes a server before it starts.
type serverOpt func(*server)

// withArgs adds serve flags.
func withArgs(args ...string) serverOpt {
	return func(s *server) { s.args = append(s.args, args...) }
}

// withEnv adds environment variables ("K=V").
func withEnv(kv ...string) serverOpt {
	return func(s *server) { s.env = append(s.env, kv...) }
}

// withWrap runs the binary through a command (see testsvc.Roughy.Wrap).
func withWrap(cmd ...string) serverOpt {
	return func(s *server) { s.wrap = cmd }
}

// withDataDir reuses a data dir instead of a new temp dir.
func withDataDir(dir string) serverOpt {
	return func(s *server) { s.DataDir = dir }
}

// noStaticKeys starts without ROUGHY_API_KEYS (dev-key bootstrap).
func noStaticKeys() serverOpt {
	return func(s *server) { s.env = slicesDelete(s.env, "ROUGHY_API_KEYS="+staticKeys) }
}

func slicesDelete(in []string, v string) []string {
	out := in[:0]
	for _, e := range in {
		if e != v {
			out = append(out, e)
		}
	}
	return out
}

// startServer starts roughy serve on a free loopback port and waits for
// /healthz. The process is stopped (SIGTERM, then SIGKILL) at cleanup.
func startServer(t *testing.T, opts ...serverOpt) *server {
	t.Helper()
	s := &server{t: t, env: []string{"ROUGHY_API_KEYS=" + staticKeys}}
	for _, o := range opts {
		o(s)
	}
	if s.DataDir == "" {
		s.DataDir = t.TempDir()
	}
	if s.bin == "" {
		s.bin = roughyBin
	}
	s.Roughy = &testsvc.Roughy{
		Bin:  s.bin,
		Args: append([]string{"--data-dir", s.DataDir, "--probe-workers", "1"}, s.args...),
		Env:  s.env,
		Wrap: s.wrap,
		TLS:  s.tls,
	}
	s.log = serverLog{&s.Log}
	s.Start(t)
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("roughy log (%s):\n%s", s.DataDir, s.log.tail(8000))
		}
	})
	return s
}

// cleanEnv is testsvc.CleanEnv, for the commands the tests run themselves.
func cleanEnv() []string { return testsvc.CleanEnv() }

// Stop sends SIGTERM and waits up to 15 s, then SIGKILLs (an error).
func (s *server) Stop() {
	if !s.Roughy.Stop(15 * time.Second) {
		s.t.Errorf("roughy did not exit 15s after SIGTERM; killed")
	}
}

// Terminate sends SIGTERM and returns a channel closed when the process
// has exited; the test decides how long to wait.
func (s *server) Terminate() <-chan struct{} { return s.Roughy.Terminate(s.t) }

// Restart starts a new process on the same data dir (and a new port).
func (s *server) Restart() {
	s.t.Helper()
	s.Start(s.t)
}

// Endpoint is the TUS creation URL.
func (s *server) Endpoint() string { return s.URL + tusPath }

// reply is a fully read HTTP response.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

var client = &http.Client{Timeout: httpTimeout}

// req describes one request to the server.
type req struct {
	Method string
	URL    string
	Key    string // "" = no Authorization
	Header map[string]string
	Body   io.Reader
	// NoTus leaves out Tus-Resumable.
	NoTus bool
}

// do sends r and reads the whole answer.
func do(t *testing.T, r req) reply {
	t.Helper()
	rep, err := tryDo(t.Context(), r)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.URL, err)
	}
	return rep
}

// tryDo is do without t.Fatal, for goroutines.
func tryDo(ctx context.Context, r req) (reply, error) {
	hr, err := http.NewRequestWithContext(ctx, r.Method, r.URL, r.Body)
	if err != nil {
		return reply{}, err
	}
	if r.Key != "" {
		hr.Header.Set("Authorization", "Bearer "+r.Key)
	}
	if !r.NoTus {
		hr.Header.Set("Tus-Resumable", "1.0.0")
	}
	for k, v := range r.Header {
		hr.Header.Set(k, v)
	}
	if cl, ok := r.Header["Content-Length"]; ok {
		if _, err := fmt.Sscan(cl, &hr.ContentLength); err != nil {
			return reply{}, fmt.Errorf("Content-Length %q: %w", cl, err)
		}
		hr.Header.Del("Content-Length")
	}
	resp, err := client.Do(hr)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, fmt.Errorf("read body: %w", err)
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// b64 encodes one Upload-Metadata value.
func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// videoMeta is a valid Upload-Metadata header.
func videoMeta(name string) string {
	return "type " + b64("video") + ",content_type " + b64("video/mp4") + ",filename " + b64(name)
}

// created is what a successful POST returned.
type created struct {
	Location  string
	SessionID string
	AssetID   string
}

// createUpload POSTs a new upload of length bytes (-1: deferred) and fails
// the test unless it is a 201 with Location and the JSON body.
func createUpload(t *testing.T, s *server, key string, length int64) created {
	t.Helper()
	h := map[string]string{"Upload-Metadata": videoMeta("e2e.bin")}
	if length < 0 {
		h["Upload-Defer-Length"] = "1"
	} else {
		h["Upload-Length"] = fmt.Sprint(length)
	}
	rep := do(t, req{Method: "POST", URL: s.Endpoint(), Key: key, Header: h})
	if rep.Status != http.StatusCreated {
		t.Fatalf("POST: got %d %s, want 201", rep.Status, rep.Body)
	}
	var body struct {
		SessionID string `json:"session_id"`
		Asset     struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"asset"`
	}
	if err := json.Unmarshal(rep.Body, &body); err != nil {
		t.Fatalf("POST body %q: %v", rep.Body, err)
	}
	loc := rep.Header.Get("Location")
	if !strings.HasPrefix(loc, s.URL+tusPath+"/") {
		t.Fatalf("POST Location: got %q, want prefix %q", loc, s.URL+tusPath+"/")
	}
	if body.SessionID == "" || !strings.HasSuffix(loc, "/"+body.SessionID) {
		t.Fatalf("POST: session_id %q does not end Location %q", body.SessionID, loc)
	}
	if body.Asset.ID == "" || body.Asset.State != "uploading" {
		t.Fatalf("POST asset: got id %q state %q, want an id and \"uploading\"", body.Asset.ID, body.Asset.State)
	}
	return created{Location: loc, SessionID: body.SessionID, AssetID: body.Asset.ID}
}

// patch sends one PATCH with data at offset.
func patch(t *testing.T, loc, key string, offset int64, data []byte) reply {
	t.Helper()
	return do(t, req{Method: "PATCH", URL: loc, Key: key, Body: bytes.NewReader(data), Header: map[string]string{
		"Upload-Offset": fmt.Sprint(offset),
		"Content-Type":  "application/offset+octet-stream",
	}})
}

// headOffset HEADs loc and returns Upload-Offset, failing unless 200.
func headOffset(t *testing.T, loc, key string) int64 {
	t.Helper()
	rep := do(t, req{Method: "HEAD", URL: loc, Key: key})
	if rep.Status != http.StatusOK {
		t.Fatalf("HEAD %s: got %d, want 200", loc, rep.Status)
	}
	var off int64 = -1
	if _, err := fmt.Sscan(rep.Header.Get("Upload-Offset"), &off); err != nil {
		t.Fatalf("HEAD Upload-Offset %q: %v", rep.Header.Get("Upload-Offset"), err)
	}
	return off
}

// asset is the JSON of GET /api/v1/assets/{id}.
type asset struct {
	ID              string  `json:"id"`
	Type            string  `json:"type"`
	State           string  `json:"state"`
	SizeBytes       *int64  `json:"size_bytes"`
	ContentType     string  `json:"content_type"`
	Filename        string  `json:"filename"`
	DurationSeconds *string `json:"duration_seconds"`
	SHA256          string  `json:"sha256"`
	CreatedAt       string  `json:"created_at"`
	DownloadURL     string  `json:"download_url"`
}

// getAsset GETs an asset; it returns the status and, on 200, the asset.
func getAsset(t *testing.T, s *server, key, id string) (int, asset) {
	t.Helper()
	rep := do(t, req{Method: "GET", URL: s.URL + "/api/v1/assets/" + id, Key: key, NoTus: true})
	var a asset
	if rep.Status == http.StatusOK {
		if err := json.Unmarshal(rep.Body, &a); err != nil {
			t.Fatalf("asset JSON %q: %v", rep.Body, err)
		}
	}
	return rep.Status, a
}

// wantReady checks that asset id is ready, with the given size and
// SHA-256, and that its download_url serves exactly those bytes.
func wantReady(t *testing.T, s *server, key, id string, data []byte) asset {
	t.Helper()
	st, a := getAsset(t, s, key, id)
	if st != http.StatusOK {
		t.Fatalf("GET asset %s: got %d, want 200", id, st)
	}
	sum := sha256Hex(data)
	if a.State != "ready" {
		t.Fatalf("asset state: got %q, want ready", a.State)
	}
	if a.SizeBytes == nil || *a.SizeBytes != int64(len(data)) {
		t.Fatalf("asset size_bytes: got %v, want %d", a.SizeBytes, len(data))
	}
	if a.SHA256 != sum {
		t.Fatalf("asset sha256: got %q, want %q", a.SHA256, sum)
	}
	if a.DownloadURL == "" {
		t.Fatalf("asset has no download_url: %+v", a)
	}
	wantDownload(t, "asset "+id, a.DownloadURL, data)
	return a
}

// wantDownload fails unless the signed download_url u serves exactly data:
// the asset's sha256 is computed from the bytes as they passed the proxy,
// so only the download shows what storage holds.
func wantDownload(t *testing.T, what, u string, data []byte) {
	t.Helper()
	if u == "" {
		t.Fatalf("%s: no download_url", what)
	}
	if err := testsvc.SameBytes(download(t, u), data); err != nil {
		t.Fatalf("%s: download: %v", what, err)
	}
}

// download GETs a download_url (no auth: the URL is signed).
func download(t *testing.T, u string) []byte {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatalf("download %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("download body: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("download: got %d %q, want 200", resp.StatusCode, b[:min(len(b), 200)])
	}
	return b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// randomBytes returns n random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// writeTemp writes data to a file under t.TempDir.
func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// runCmd runs a command with a deadline and returns its stdout; it fails
// the test with stderr on error.
func runCmd(t *testing.T, timeout time.Duration, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\nstdout:\n%s\nstderr:\n%s", name, args, err, out.String(), errb.String())
	}
	return out.String()
}
