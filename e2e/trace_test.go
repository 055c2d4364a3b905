package e2e

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"testing"

	"github.com/roughy/ingest/internal/testsvc"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// TestTracePatchSpans: on the embedded default with the standard
// OTEL_EXPORTER_OTLP_ENDPOINT set (no flag), one PATCH that completes its
// upload is exported over OTLP as a request span that continues the
// client's traceparent, carries the upload id and account, and has the
// commits and the completion as children.
func TestTracePatchSpans(t *testing.T) {
	recv := testsvc.StartOTLPReceiver(t)
	s := startServer(t, withEnv("OTEL_EXPORTER_OTLP_ENDPOINT="+recv.URL, "OTEL_BSP_SCHEDULE_DELAY=100"))
	data := randomBytes(3 << 20)
	up := createUpload(t, s, acmeKey, int64(len(data)))
	traceID, parentID := randomBytes(16), randomBytes(8)
	r := do(t, req{Method: "PATCH", URL: up.Location, Key: acmeKey, Body: bytes.NewReader(data), Header: map[string]string{
		"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
		"Traceparent": "00-" + hex.EncodeToString(traceID) + "-" + hex.EncodeToString(parentID) + "-01",
	}})
	if r.Status != http.StatusNoContent {
		t.Fatalf("PATCH: got %d %s, want 204", r.Status, r.Body)
	}

	spans := recv.WaitTrace(t, traceID, func(s []*tracepb.Span) bool {
		return len(testsvc.SpansNamed(s, "PATCH tus_upload")) == 1 && len(testsvc.SpansNamed(s, "complete")) == 1
	})
	req := testsvc.SpansNamed(spans, "PATCH tus_upload")[0]
	if !bytes.Equal(req.ParentSpanId, parentID) {
		t.Errorf("request span's parent: got %x, want the traceparent's %x", req.ParentSpanId, parentID)
	}
	if req.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("request span kind: got %v, want server", req.Kind)
	}
	for k, want := range map[string]string{"roughy.upload_id": up.SessionID, "roughy.account": "acme",
		"http.route": "tus_upload", "http.response.status_code": "204"} {
		if got := testsvc.SpanAttr(req, k); got != want {
			t.Errorf("request span %s: got %q, want %q", k, got, want)
		}
	}
	commits := testsvc.ChildrenOf(testsvc.SpansNamed(spans, "commit"), req)
	if len(commits) == 0 {
		t.Errorf("no commit span under the request span: %v", testsvc.SpanNames(spans))
	}
	for _, c := range commits {
		if got := testsvc.SpanAttr(c, "roughy.upload_id"); got != up.SessionID {
			t.Errorf("commit span roughy.upload_id: got %q, want %q", got, up.SessionID)
		}
	}
	if len(testsvc.ChildrenOf(testsvc.SpansNamed(spans, "complete"), req)) != 1 {
		t.Errorf("the complete span is not a child of the request span: %v", testsvc.SpanNames(spans))
	}
	wantReady(t, s, acmeKey, up.AssetID, data)
}
