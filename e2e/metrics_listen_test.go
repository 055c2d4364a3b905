package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"testing"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestMetricsListen: --metrics-listen (here through its environment twin)
// serves /metrics on an address of its own, and the public listener then
// answers /metrics 404, so keeping it private does not hang on the
// balancer's path rules.
func TestMetricsListen(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testsvc.FreePort(t))
	s := startServer(t, withEnv("ROUGHY_METRICS_LISTEN="+addr))
	data := randomBytes(1000)
	c := createUpload(t, s, acmeKey, int64(len(data)))
	if r := patch(t, c.Location, acmeKey, 0, data); r.Status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", r.Status, r.Body)
	}
	wantReady(t, s, acmeKey, c.AssetID, data)

	if r := do(t, req{Method: "GET", URL: s.URL + "/metrics", NoTus: true}); r.Status != http.StatusNotFound {
		t.Errorf("GET /metrics on the public listener: %d, want 404 with --metrics-listen set", r.Status)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics on %s: %v", addr, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`roughy_uploads_completed_total 1`)) {
		t.Fatalf("GET /metrics on %s: %d, want 200 with roughy_uploads_completed_total 1:\n%.2000s", addr, resp.StatusCode, body)
	}
}

// TestPprofOnMetricsListener: --pprof serves Go's runtime profiles on the
// metrics listener only; without it that listener answers 404 there, and
// the public listener never serves them. --pprof without
// --metrics-listen is refused at start.
func TestPprofOnMetricsListener(t *testing.T) {
	get := func(url string) (int, []byte) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	off := fmt.Sprintf("127.0.0.1:%d", testsvc.FreePort(t))
	startServer(t, withArgs("--metrics-listen", off))
	if code, _ := get("http://" + off + "/debug/pprof/goroutine?debug=1"); code != http.StatusNotFound {
		t.Errorf("profiles without --pprof: %d, want 404", code)
	}

	on := fmt.Sprintf("127.0.0.1:%d", testsvc.FreePort(t))
	s := startServer(t, withArgs("--metrics-listen", on, "--pprof"))
	code, body := get("http://" + on + "/debug/pprof/goroutine?debug=1")
	if code != http.StatusOK || !bytes.Contains(body, []byte("goroutine profile:")) {
		t.Errorf("goroutine profile with --pprof: %d %.200s, want 200 with the profile", code, body)
	}
	if code, body := get("http://" + on + "/debug/pprof/block?debug=1"); code != http.StatusOK || !bytes.Contains(body, []byte("--- contention:")) {
		t.Errorf("block profile with --pprof: %d %.200s, want 200 with the contention profile", code, body)
	}
	if r := do(t, req{Method: "GET", URL: s.URL + "/debug/pprof/goroutine?debug=1", NoTus: true}); r.Status != http.StatusNotFound {
		t.Errorf("profiles on the public listener: %d, want 404", r.Status)
	}

	out, err := exec.Command(roughyBin, "serve", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--pprof").CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("--pprof serves on --metrics-listen only")) {
		t.Errorf("--pprof without --metrics-listen: %v, %s; want a usage error", err, out)
	}
}
