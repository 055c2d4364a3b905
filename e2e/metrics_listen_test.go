package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
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
