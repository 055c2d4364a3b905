package e2e

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestMetricsFamiliesMove: on the embedded default, one scenario (a PATCH
// holding the whole buffer budget, one waiting for it, a takeover, a
// checksum mismatch, a completed upload, a DELETE) moves every family the
// node serves on /metrics: runtime and process, bytes in,
// uploads created/completed/failed/deleted, PATCH duration and bytes,
// commit latency, buffer waits, leases taken over and released, error
// answers by status, the probe queue.
func TestMetricsFamiliesMove(t *testing.T) {
	// 6 MiB: one local PATCH's buffers (6 × 1 MiB) spend the budget.
	// No probe workers: the completed upload's job stays queued.
	s := startServer(t, withArgs("--max-buffer-memory", "6MiB", "--probe-workers", "0"))
	before := testsvc.ScrapeMetrics(t, s.URL+"/metrics")

	// A: a PATCH that sends half of its body and waits. Alone on the
	// node, its body of more than six buffers takes all six.
	const size = 8 << 20
	dataA := randomBytes(size)
	a := createUpload(t, s, acmeKey, size)
	held := openRawPatch(t, a.Location, acmeKey, 0, size, nil)
	if err := held.Write(dataA[:size/2]); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, s, "roughy_buffer_bytes_in_use", func(v int64) bool { return v == 6<<20 })

	// B waits for A's buffers.
	dataB := randomBytes(1000)
	b := createUpload(t, s, acmeKey, int64(len(dataB)))
	doneB := make(chan reply, 1)
	go func() {
		r, err := tryDo(t.Context(), req{Method: "PATCH", URL: b.Location, Key: acmeKey, Body: bytes.NewReader(dataB),
			Header: map[string]string{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}})
		if err != nil {
			r.Status = -1
		}
		doneB <- r
	}()
	time.Sleep(200 * time.Millisecond)

	// A newer PATCH of A takes it over: the held one lets go (409
	// upload_taken_over) and commits what it stored.
	r := patch(t, a.Location, acmeKey, 0, dataA)
	if got, err := held.Response(10 * time.Second); err != nil || got.Status != http.StatusConflict {
		t.Fatalf("taken-over PATCH: got %d %s (%v), want 409", got.Status, got.Body, err)
	}
	if r.Status == http.StatusConflict {
		// The held PATCH committed a prefix first: resume from it.
		off := headOffset(t, a.Location, acmeKey)
		r = patch(t, a.Location, acmeKey, off, dataA[off:])
	}
	if r.Status != http.StatusNoContent {
		t.Fatalf("PATCH after takeover: got %d %s, want 204", r.Status, r.Body)
	}
	if got := <-doneB; got.Status != http.StatusNoContent {
		t.Fatalf("waiting PATCH: got %d %s, want 204", got.Status, got.Body)
	}

	// C: a checksum mismatch (460), then DELETE.
	c := createUpload(t, s, acmeKey, 100)
	wrong := sha1.Sum([]byte("something else"))
	r = do(t, req{Method: "PATCH", URL: c.Location, Key: acmeKey, Body: bytes.NewReader(make([]byte, 100)), Header: map[string]string{
		"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
		"Upload-Checksum": "sha1 " + base64.StdEncoding.EncodeToString(wrong[:]),
	}})
	if r.Status != 460 {
		t.Fatalf("bad checksum: got %d %s, want 460", r.Status, r.Body)
	}
	if r := do(t, req{Method: "DELETE", URL: c.Location, Key: acmeKey}); r.Status != http.StatusNoContent {
		t.Fatalf("DELETE: got %d, want 204", r.Status)
	}

	after := testsvc.ScrapeMetrics(t, s.URL+"/metrics")
	before.CheckGrown(t, after, [][]string{
		{"go_gc_duration_seconds_count"},
		{"process_cpu_seconds_total"},
		{"roughy_http_requests_total", `route="tus_upload"`, `method="PATCH"`},
		{"roughy_http_request_duration_seconds_count", `route="tus_create"`},
		{"roughy_upload_bytes_received_total"},
		{"roughy_uploads_created_total"},
		{"roughy_uploads_completed_total"},
		{"roughy_uploads_deleted_total"},
		{"roughy_uploads_failed_total", `reason="checksum"`},
		{"roughy_uploads_failed_total", `reason="taken_over"`},
		{"roughy_patch_duration_seconds_count"},
		{"roughy_patch_bytes_sum"},
		{"roughy_upload_commits_total"},
		{"roughy_commit_duration_seconds_count"},
		{"roughy_buffer_waits_total"},
		{"roughy_buffer_wait_seconds_total"},
		{"roughy_leases_taken_over_total"},
		{"roughy_leases_released_total"},
		{"roughy_http_errors_total", `status="409"`, `code="upload_taken_over"`},
		{"roughy_http_errors_total", `status="460"`},
		{"roughy_probe_queue_jobs"},
		{"roughy_probe_queue_oldest_seconds"},
		{"roughy_queue_length", `queue="probe"`},
	})
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "roughy_buffer_bytes_budget"} {
		if v, _ := after.Sum(name); v <= 0 {
			t.Errorf("%s: got %v, want > 0", name, v)
		}
	}
	// Families that only a fault moves are there from the start.
	for _, name := range []string{"roughy_leases_lost_total", "roughy_slow_bodies_total", "roughy_active_uploads", "roughy_probe_dead_letters"} {
		if _, ok := after.Sum(name); !ok {
			t.Errorf("/metrics has no %s", name)
		}
	}
	// The taken-over upload and the one that waited for buffers hold
	// their sources.
	wantReady(t, s, acmeKey, a.AssetID, dataA)
	wantReady(t, s, acmeKey, b.AssetID, dataB)
}
