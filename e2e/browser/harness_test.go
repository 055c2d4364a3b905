package browsere2e

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

const (
	chromiumPath = "/usr/bin/chromium"
	acmeKey      = "rk_live_browserkeybrowserkeybrowser0001"
	tusPath      = "/api/v1/assets/upload-resumable"
	// pageTimeout bounds one browser run, from launch to the page's result.
	pageTimeout = 40 * time.Second
)

var (
	roughyBin string
	repoRoot  string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	root, err := filepath.Abs("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "browsere2e:", err)
		return 1
	}
	repoRoot = root
	for _, need := range []string{chromiumPath, filepath.Join(root, "e2e/browser/node_modules/tus-js-client/dist/tus.min.js")} {
		if _, err := os.Stat(need); err != nil {
			fmt.Fprintf(os.Stderr, "browsere2e: %s missing (run scripts/setup-browser.sh): %v\n", need, err)
			return 1
		}
	}
	bin, cleanup, err := testsvc.BuildRoughy()
	if err != nil {
		fmt.Fprintln(os.Stderr, "browsere2e:", err)
		return 1
	}
	defer cleanup()
	roughyBin = bin
	return m.Run()
}

// withoutDBus drops Chromium's D-Bus complaints (no bus in a container)
// from a log, keeping what explains a failure.
func withoutDBus(log string) string {
	var keep []string
	for line := range strings.Lines(log) {
		if !strings.Contains(line, "dbus") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "")
}

// startProcess starts cmd in its own process group and stops the group at
// cleanup (SIGTERM, then SIGKILL after grace).
func startProcess(t *testing.T, cmd *exec.Cmd, grace time.Duration) <-chan struct{} {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(grace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-done
		}
		// Children (Chromium's renderers) may outlive the leader briefly:
		// wait until the group is empty, then kill what is left.
		deadline := time.Now().Add(grace)
		for syscall.Kill(-pgid, 0) == nil {
			if time.Now().After(deadline) {
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	return done
}

// roughy is one running `roughy serve`.
type roughy struct {
	*testsvc.Roughy
	DataDir string
}

// startRoughy starts roughy serve on a free loopback port with the given
// --cors-origins and waits for /healthz; it is stopped at cleanup.
func startRoughy(t *testing.T, corsOrigins string) *roughy {
	t.Helper()
	r := &roughy{DataDir: t.TempDir()}
	r.Roughy = &testsvc.Roughy{
		Bin: roughyBin,
		Args: []string{"--data-dir", r.DataDir,
			"--probe-workers", "1",
			"--cors-origins", corsOrigins},
		Env: []string{"ROUGHY_API_KEYS=acme=" + acmeKey},
	}
	r.Start(t)
	t.Cleanup(func() {
		r.Stop(15 * time.Second)
		if t.Failed() {
			t.Logf("roughy log:\n%s", r.Log.Tail(6000))
		}
	})
	return r
}

// Endpoint is the TUS creation URL.
func (r *roughy) Endpoint() string { return r.URL + tusPath }

// asset is the part of the asset JSON the tests check.
type asset struct {
	ID          string `json:"id"`
	Type        string `json:"type"`
	State       string `json:"state"`
	SizeBytes   *int64 `json:"size_bytes"`
	ContentType string `json:"content_type"`
	Filename    string `json:"filename"`
	SHA256      string `json:"sha256"`
	DownloadURL string `json:"download_url"`
}

// checkDownload fails the test (not at once) unless a's download_url
// serves exactly want. The asset's sha256 is computed from the bytes as
// they passed the server and proves nothing about what storage holds;
// the download does.
func checkDownload(t *testing.T, a asset, want []byte) {
	t.Helper()
	if a.DownloadURL == "" {
		t.Errorf("asset %s has no download_url", a.ID)
		return
	}
	got, err := download(t, a.DownloadURL)
	if err != nil {
		t.Errorf("asset %s: download: %v", a.ID, err)
		return
	}
	if err := testsvc.SameBytes(got, want); err != nil {
		t.Errorf("asset %s: download: %v", a.ID, err)
	}
}

// download GETs u (a signed download_url: no key) and reads it whole.
func download(t *testing.T, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("got %d %.200q, want 200", resp.StatusCode, b)
	}
	return b, err
}

// Asset GETs /api/v1/assets/{id} from Go (no browser involved).
func (r *roughy) Asset(t *testing.T, id string) asset {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, r.URL+"/api/v1/assets/"+id, nil)
	if err != nil {
		t.Fatalf("asset request: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+acmeKey)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET asset %s: %v", id, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET asset %s: %d %s", id, resp.StatusCode, body)
	}
	var a asset
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("asset JSON %s: %v", body, err)
	}
	return a
}

// pageResponse is one response tus-js-client saw (onAfterResponse).
type pageResponse struct {
	Method   string  `json:"method"`
	Status   int     `json:"status"`
	Offset   *string `json:"offset"`
	Location *string `json:"location"`
}

// pageResult is what upload.js POSTs to /result.
type pageResult struct {
	Mode      string         `json:"mode"`
	Size      int            `json:"size"`
	SHA256    string         `json:"sha256"`
	OK        bool           `json:"ok"`
	Error     string         `json:"error"`
	URL       *string        `json:"url"`
	Responses []pageResponse `json:"responses"`
	First     *struct {
		Aborted  bool    `json:"aborted"`
		Accepted int64   `json:"accepted"`
		URL      *string `json:"url"`
		Error    string  `json:"error"`
	} `json:"first"`
	FirstResponses []pageResponse `json:"firstResponses"`
	PreviousCount  int            `json:"previousCount"`
}

// pageServer serves the test page, tus-js-client's browser bundle and the
// /result sink on its own loopback origin.
type pageServer struct {
	Origin  string
	results chan pageResult
	raw     chan []byte
	reqLog  *testsvc.LogBuffer
}

func startPageServer(t *testing.T) *pageServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("page listen: %v", err)
	}
	p := &pageServer{
		Origin:  "http://" + ln.Addr().String(),
		results: make(chan pageResult, 1),
		raw:     make(chan []byte, 1),
	}
	dir := filepath.Join(repoRoot, "e2e/browser")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /tus.min.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, "node_modules/tus-js-client/dist/tus.min.js"))
	})
	mux.HandleFunc("GET /upload.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, "page/upload.js"))
	})
	mux.HandleFunc("GET /upload.html", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, "page/upload.html"))
	})
	mux.HandleFunc("POST /result", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var res pageResult
		if err := json.Unmarshal(body, &res); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case p.results <- res:
			p.raw <- body
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	})
	reqLog := &testsvc.LogBuffer{}
	p.reqLog = reqLog
	logged := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(reqLog, "%s %s %s\n", time.Now().Format("15:04:05.000"), r.Method, r.URL.Path)
		mux.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: logged, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return p
}

// pageParams are the query parameters of one browser run.
type pageParams struct {
	Endpoint string
	Mode     string
	Size     int
	Chunk    int
	Seed     uint32
	// NoKey sends no Authorization at all (a direct upload URL).
	NoKey bool
}

// runBrowser opens the page in a fresh headless Chromium and waits for the
// page's result (at most pageTimeout).
func runBrowser(t *testing.T, p *pageServer, pp pageParams) pageResult {
	t.Helper()
	q := url.Values{}
	q.Set("endpoint", pp.Endpoint)
	if !pp.NoKey {
		q.Set("key", acmeKey)
	}
	q.Set("mode", pp.Mode)
	q.Set("size", fmt.Sprint(pp.Size))
	q.Set("chunk", fmt.Sprint(pp.Chunk))
	q.Set("seed", fmt.Sprint(pp.Seed))
	pageURL := p.Origin + "/upload.html?" + q.Encode()

	log := &testsvc.LogBuffer{}
	cmd := exec.Command(chromiumPath,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0",
		"--user-data-dir="+t.TempDir(),
		pageURL)
	cmd.Stdout, cmd.Stderr = log, log
	start := time.Now()
	done := startProcess(t, cmd, 5*time.Second)
	select {
	case res := <-p.results:
		raw := <-p.raw
		t.Logf("page result after %v: %s", time.Since(start).Round(time.Millisecond), raw)
		return res
	case <-done:
		t.Fatalf("chromium exited before the page reported; page requests:\n%s\nchromium log:\n%s", p.reqLog.Tail(6000), withoutDBus(log.Tail(6000)))
	case <-time.After(pageTimeout):
		t.Fatalf("no page result after %v; page requests:\n%s\nchromium log:\n%s", pageTimeout, p.reqLog.Tail(6000), withoutDBus(log.Tail(6000)))
	}
	return pageResult{}
}

// makeBytes is upload.js's generator: xorshift32, little-endian words.
func makeBytes(n int, seed uint32) []byte {
	buf := make([]byte, n+4)
	x := seed
	if x == 0 {
		x = 1
	}
	for i := 0; i < n; i += 4 {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		binary.LittleEndian.PutUint32(buf[i:], x)
	}
	return buf[:n]
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// assetIDOf is the last path segment of an upload URL (session id = asset id).
func assetIDOf(t *testing.T, uploadURL string) string {
	t.Helper()
	u, err := url.Parse(uploadURL)
	if err != nil || !strings.HasPrefix(u.Path, tusPath+"/") {
		t.Fatalf("upload URL %q is not under %s: %v", uploadURL, tusPath, err)
	}
	return strings.TrimPrefix(u.Path, tusPath+"/")
}
