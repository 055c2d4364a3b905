package testsvc

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// OTLPReceiver is an in-process OTLP/HTTP trace collector on loopback: it
// keeps every span a node exports to URL (give it as --otlp-endpoint).
type OTLPReceiver struct {
	URL string

	mu    sync.Mutex
	spans []*tracepb.Span
}

// StartOTLPReceiver starts a receiver, closed at t's cleanup.
func StartOTLPReceiver(t testing.TB) *OTLPReceiver {
	t.Helper()
	r := &OTLPReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

func (r *OTLPReceiver) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
		http.Error(w, "want POST /v1/traces", http.StatusNotFound)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	var in coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &in)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	for _, rs := range in.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			r.spans = append(r.spans, ss.Spans...)
		}
	}
	r.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out) // the exporter hung up: nothing to tell it
}

// Trace returns the spans received so far of trace id.
func (r *OTLPReceiver) Trace(id []byte) []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range r.spans {
		if bytes.Equal(s.TraceId, id) {
			out = append(out, s)
		}
	}
	return out
}

// WaitTrace polls for up to 20 s until done(the spans of trace id so far)
// and returns those spans; it fails t on timeout.
func (r *OTLPReceiver) WaitTrace(t testing.TB, id []byte, done func([]*tracepb.Span) bool) []*tracepb.Span {
	t.Helper()
	var spans []*tracepb.Span
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if spans = r.Trace(id); done(spans) {
			return spans
		}
	}
	t.Fatalf("trace %x: %d spans, not complete after 20 s: %v", id, len(spans), SpanNames(spans))
	return nil
}

// SpanNames lists spans' names, for failure messages.
func SpanNames(spans []*tracepb.Span) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name
	}
	return out
}

// SpanAttr returns the value of a span's attribute key (an integer
// formatted), "" when absent.
func SpanAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key != key {
			continue
		}
		if _, ok := kv.Value.Value.(*commonpb.AnyValue_IntValue); ok {
			return strconv.FormatInt(kv.Value.GetIntValue(), 10)
		}
		return kv.Value.GetStringValue()
	}
	return ""
}

// SpansNamed returns the spans called name.
func SpansNamed(spans []*tracepb.Span, name string) []*tracepb.Span {
	var out []*tracepb.Span
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// ChildrenOf returns the spans whose parent is parent.
func ChildrenOf(spans []*tracepb.Span, parent *tracepb.Span) []*tracepb.Span {
	var out []*tracepb.Span
	for _, s := range spans {
		if bytes.Equal(s.ParentSpanId, parent.SpanId) {
			out = append(out, s)
		}
	}
	return out
}
