package fleet

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// TestFleetMetricsFamiliesMove: in fleet mode (Redis, S3), an upload, a
// probe, a node whose bucket does not exist and a Redis outage move the
// S3, Redis and probe families of /metrics: S3 request
// duration by operation and errors, Redis script duration and errors by
// script, probe jobs settled and the probe queue's gauges.
func TestFleetMetricsFamiliesMove(t *testing.T) {
	f := startFleet(t, 1)
	n := f.nodes[0]
	before := testsvc.ScrapeMetrics(t, n.URL+"/metrics")

	// Random bytes: ffprobe parks the job as dead (not media).
	data := make([]byte, 6<<20)
	rand.Read(data)
	loc, id := create(t, n, int64(len(data)))
	if a, err := patch(t.Context(), loc, 0, data); err != nil || a.Status != http.StatusNoContent {
		t.Fatalf("PATCH: got %d %s (%v), want 204", a.Status, a.Body, err)
	}
	var after testsvc.Metrics
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		after = testsvc.ScrapeMetrics(t, n.URL+"/metrics")
		if v, _ := after.Sum("roughy_probe_jobs_total"); v > 0 || time.Now().After(deadline) {
			break
		}
	}
	before.CheckGrown(t, after, [][]string{
		{"roughy_s3_request_duration_seconds_count", `operation="CreateMultipartUpload"`},
		{"roughy_s3_request_duration_seconds_count", `operation="UploadPart"`},
		{"roughy_s3_request_duration_seconds_count", `operation="CompleteMultipartUpload"`},
		{"roughy_redis_script_duration_seconds_count", `script="create upload"`},
		{"roughy_redis_script_duration_seconds_count", `script="acquire lease"`},
		{"roughy_redis_script_duration_seconds_count", `script="commit"`},
		{"roughy_commit_duration_seconds_count"},
		{"roughy_probe_jobs_total", `outcome="dead"`},
		{"roughy_probe_dead_letters"},
	})
	for _, name := range []string{"roughy_probe_queue_jobs", "roughy_probe_queue_oldest_seconds"} {
		if _, ok := after.Sum(name); !ok {
			t.Errorf("/metrics has no %s", name)
		}
	}
	wantReady(t, n, id, data)

	// A node on a bucket that does not exist: /readyz's HeadBucket fails.
	bad := f.startNode("--s3-bucket", "no-such-bucket-"+hex.EncodeToString(data[:4]), "--s3-max-attempts", "1", "--probe-workers", "0")
	if a := mustGet(t, bad.URL+"/readyz"); a != http.StatusServiceUnavailable {
		t.Fatalf("readyz without a bucket: got %d, want 503", a)
	}
	badAfter := testsvc.ScrapeMetrics(t, bad.URL+"/metrics")
	if v, _ := badAfter.Sum("roughy_s3_request_errors_total", `operation="HeadBucket"`); v < 1 {
		t.Errorf("roughy_s3_request_errors_total{operation=\"HeadBucket\"}: got %v, want >= 1", v)
	}

	// Redis down: a key no node has cached is looked up by a script,
	// which fails (a creation's first Redis work is no script: the
	// webhook endpoints' list).
	f.redis.Kill()
	if a := mustSend(t, "POST", n.URL+tusPath, map[string]string{
		"Authorization": "Bearer rk_live_notcachedanywherenotcachedanywhere00",
		"Upload-Length": "10", "Upload-Metadata": "type dmlkZW8=",
	}, nil); a.Status != http.StatusServiceUnavailable {
		t.Fatalf("POST with Redis down: got %d %s, want 503", a.Status, a.Body)
	}
	down := testsvc.ScrapeMetrics(t, n.URL+"/metrics")
	if v, _ := down.Sum("roughy_redis_script_errors_total", `script="key by hash"`); v < 1 {
		t.Errorf("roughy_redis_script_errors_total{script=\"key by hash\"}: got %v, want >= 1", v)
	}
	if v, _ := down.Sum("roughy_http_errors_total", `status="503"`); v < 1 {
		t.Errorf("roughy_http_errors_total{status=\"503\"}: got %v, want >= 1", v)
	}
}

func mustGet(t *testing.T, url string) int {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestFleetTracePatchSpans: in S3 mode, the span tree of one PATCH that
// completes its upload, exported over OTLP to an in-process receiver:
// the request span continues the client's traceparent, and has the S3
// part uploads, the commits and the completion as children, the
// completion the CompleteMultipartUpload.
func TestFleetTracePatchSpans(t *testing.T) {
	recv := testsvc.StartOTLPReceiver(t)
	f := startFleet(t, 0)
	n := f.startNode("--otlp-endpoint", recv.URL)

	data := make([]byte, 40<<20)
	rand.Read(data)
	loc, id := create(t, n, int64(len(data)))
	traceID, parentID := make([]byte, 16), make([]byte, 8)
	rand.Read(traceID)
	rand.Read(parentID)
	a, err := send(t.Context(), "PATCH", loc, map[string]string{
		"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
		"Traceparent": "00-" + hex.EncodeToString(traceID) + "-" + hex.EncodeToString(parentID) + "-01",
	}, bytes.NewReader(data))
	if err != nil || a.Status != http.StatusNoContent {
		t.Fatalf("PATCH: got %d %s (%v), want 204", a.Status, a.Body, err)
	}
	uploadID := loc[strings.LastIndexByte(loc, '/')+1:]
	wantReady(t, n, id, data)
	// SIGTERM flushes the spans the batcher still holds.
	n.Stop(15 * time.Second)

	spans := recv.WaitTrace(t, traceID, func(s []*tracepb.Span) bool {
		return len(testsvc.SpansNamed(s, "PATCH tus_upload")) == 1 && len(testsvc.SpansNamed(s, "s3 CompleteMultipartUpload")) == 1
	})
	req := testsvc.SpansNamed(spans, "PATCH tus_upload")[0]
	if !bytes.Equal(req.ParentSpanId, parentID) {
		t.Errorf("request span's parent: got %x, want the traceparent's %x", req.ParentSpanId, parentID)
	}
	if got := testsvc.SpanAttr(req, "roughy.upload_id"); got != uploadID {
		t.Errorf("request span roughy.upload_id: got %q, want %q", got, uploadID)
	}
	if got := testsvc.SpanAttr(req, "roughy.account"); got != "acme" {
		t.Errorf("request span roughy.account: got %q, want %q", got, "acme")
	}
	parts := testsvc.ChildrenOf(testsvc.SpansNamed(spans, "s3 UploadPart"), req)
	commits := testsvc.ChildrenOf(testsvc.SpansNamed(spans, "commit"), req)
	if len(parts) < 2 || len(commits) < 2 {
		t.Errorf("children of the request span: got %d UploadPart and %d commit spans, want at least 2 of each (40 MiB in 16 MiB parts): %v",
			len(parts), len(commits), testsvc.SpanNames(spans))
	}
	for _, p := range parts {
		if testsvc.SpanAttr(p, "s3.part_number") == "" || testsvc.SpanAttr(p, "roughy.upload_id") != uploadID {
			t.Errorf("UploadPart span attributes: %v", p.Attributes)
		}
	}
	completes := testsvc.ChildrenOf(testsvc.SpansNamed(spans, "complete"), req)
	if len(completes) != 1 || len(testsvc.ChildrenOf(testsvc.SpansNamed(spans, "s3 CompleteMultipartUpload"), completes[0])) != 1 {
		t.Errorf("want one complete span under the request, with CompleteMultipartUpload under it: %v", testsvc.SpanNames(spans))
	}
}
