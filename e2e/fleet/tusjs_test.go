package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// balancer is a round-robin HTTP load balancer in front of the fleet's
// nodes, like the one users run: every request goes to the next node that
// is up; a request whose node dies under it gets 502. Nodes the test
// killed are marked down (a health check) until they are back.
type balancer struct {
	mu    sync.Mutex
	nodes []*node
	down  map[*node]bool
	next  int
	URL   string
	// rate, if set, paces every request body (bytes a second), so that
	// the uploads last long enough for the kills however fast the machine.
	rate int
}

func startBalancer(t *testing.T) (*balancer, net.Listener) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	b := &balancer{down: map[*node]bool{}, URL: "http://" + ln.Addr().String()}
	return b, ln
}

func (b *balancer) serve(t *testing.T, ln net.Listener) {
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			target, _ := url.Parse(b.pick())
			r.SetURL(target)
			r.Out.Host = r.In.Host
			if b.rate > 0 && r.Out.Body != nil {
				r.Out.Body = struct {
					io.Reader
					io.Closer
				}{&testsvc.PacedReader{R: r.Out.Body, Rate: b.rate}, r.Out.Body}
			}
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) {
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	srv := &http.Server{Handler: rp}
	// Serve ends with ErrServerClosed at Close; another end fails the
	// uploads that go through it.
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
}

// pick returns the URL of the next node that is up.
func (b *balancer) pick() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	for range len(b.nodes) {
		n := b.nodes[b.next%len(b.nodes)]
		b.next++
		if !b.down[n] {
			return n.URL
		}
	}
	return b.nodes[0].URL
}

func (b *balancer) setDown(n *node, down bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down[n] = down
}

// restart starts n again (on a new port) while the balancer cannot pick
// it, then lets it pick it again.
func (b *balancer) restart(n *node) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n.start()
	b.down[n] = false
}

// jsResult is one upload as e2e/js/fleet.mjs reports it.
type jsResult struct {
	File     string         `json:"file"`
	URL      string         `json:"url"`
	AssetID  string         `json:"asset_id"`
	Error    string         `json:"error"`
	Statuses map[string]int `json:"statuses"`
}

// TestFleetTusJSKills: twelve uploads through tus-js-client 4.3.1 with its
// DEFAULT retryDelays (0, 1, 3, 5 s: nine seconds in all), through three
// nodes behind a round-robin balancer, while a random node is killed
// (SIGKILL) every 0.8 to 2 seconds and restarted: every upload
// completes, and every object is its source byte for byte.
func TestFleetTusJSKills(t *testing.T) {
	script, _ := filepath.Abs(filepath.Join("..", "js", "fleet.mjs"))
	if _, err := os.Stat(filepath.Join("..", "js", "node_modules", "tus-js-client", "package.json")); err != nil {
		t.Fatalf("tus-js-client not installed (scripts/setup-deps.sh runs npm ci in e2e/js): %v", err)
	}
	lb, ln := startBalancer(t)
	// 4 MiB/s per request: each 40 MiB upload takes at least 10 s, a
	// dozen kills' worth, where unpaced ones could end after two.
	lb.rate = 4 << 20
	f := startFleet(t, 3, "--lease-ttl", "10s", "--public-url", lb.URL)
	lb.nodes = f.nodes
	lb.serve(t, ln)

	const uploads, size = 12, 40 << 20
	dir := t.TempDir()
	var files []string
	sums := map[string]string{}
	for i := range uploads {
		src := randomBytes(size)
		p := filepath.Join(dir, "upload-"+strconv.Itoa(i)+".bin")
		if err := os.WriteFile(p, src, 0o600); err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(src)
		files = append(files, p)
		sums[p] = hex.EncodeToString(s[:])
	}

	cmd := exec.CommandContext(t.Context(), "node", script)
	cmd.Env = append(os.Environ(), "ROUGHY_ENDPOINT="+lb.URL+tusPath, "ROUGHY_KEY="+fleetKey,
		"ROUGHY_FILES="+strings.Join(files, ","), "ROUGHY_CHUNK="+strconv.Itoa(4<<20))
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("node: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	kills := 0
	deadline := time.After(4 * time.Minute)
wait:
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("fleet.mjs: %v\n%s", err, errOut.String())
			}
			break wait
		case <-deadline:
			t.Fatal("uploads not finished within 4 minutes")
		case <-time.After(time.Duration(800+mrand.IntN(1200)) * time.Millisecond):
			victim := f.nodes[mrand.IntN(len(f.nodes))]
			victim.kill()
			lb.setDown(victim, true)
			kills++
			time.Sleep(500 * time.Millisecond)
			lb.restart(victim)
		}
	}

	var results []jsResult
	if err := json.Unmarshal([]byte(out.String()), &results); err != nil || len(results) != uploads {
		t.Fatalf("fleet.mjs output %q: %v", out.String(), err)
	}
	t.Logf("%d kills during the uploads", kills)
	if kills < 3 {
		t.Fatalf("%d kills while the uploads ran, want at least 3", kills)
	}
	failed := 0
	for _, r := range results {
		t.Logf("%s: %v", filepath.Base(r.File), r.Statuses)
		if r.Error != "" {
			failed++
			t.Errorf("%s: tus-js-client gave up: %s", filepath.Base(r.File), r.Error)
			continue
		}
		a := readyAsset(t, f.nodes[0], r.AssetID)
		if a.SHA256 != sums[r.File] {
			t.Errorf("%s: asset sha256 %s, want %s", filepath.Base(r.File), a.SHA256, sums[r.File])
			continue
		}
		src, _ := os.ReadFile(r.File)
		if err := testsvc.SameBytes(download(t, a.DownloadURL), src); err != nil {
			t.Errorf("%s: downloaded object: %v", filepath.Base(r.File), err)
		}
	}
	t.Logf("%d of %d uploads completed and verified", uploads-failed, uploads)
}
