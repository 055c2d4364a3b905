package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Telemetry is a node's metrics (Prometheus, served on /metrics) and
// traces (OpenTelemetry, when a TracerProvider is given). It is made
// before the backends, because it observes them too: it implements
// pipeline.Observer (S3 requests), sessionstore.Observer (Redis scripts)
// and ProbeSettled (probe.Config.Settled). One Server per Telemetry.
type Telemetry struct {
	reg *prometheus.Registry
	m   *metrics
	// tracer is nil when tracing is off: the hot paths then skip every
	// span call (no header parsing, no context values).
	tracer trace.Tracer
}

var (
	_ pipeline.Observer     = (*Telemetry)(nil)
	_ sessionstore.Observer = (*Telemetry)(nil)
)

// NewTelemetry returns a node's telemetry: its own Prometheus registry
// with the Go runtime and process collectors, and spans from tp (nil: no
// tracing).
func NewTelemetry(tp trace.TracerProvider) *Telemetry {
	reg := newRegistry()
	t := &Telemetry{reg: reg, m: newMetrics(reg)}
	if tp != nil {
		t.tracer = tp.Tracer("github.com/roughy/ingest/proxy")
	}
	return t
}

// Registry is the registry /metrics serves (to register more collectors).
func (t *Telemetry) Registry() *prometheus.Registry { return t.reg }

// StartS3 implements pipeline.Observer: the request's latency and errors
// by operation, and a span (child of the request's) when tracing.
func (t *Telemetry) StartS3(ctx context.Context, op string, part int32) (context.Context, func(error)) {
	start := time.Now()
	var span trace.Span
	if t.tracer != nil {
		attrs := []attribute.KeyValue{attribute.String("s3.operation", op)}
		if part > 0 {
			attrs = append(attrs, attribute.Int("s3.part_number", int(part)))
		}
		attrs = append(attrs, uploadAttrs(ctx)...)
		ctx, span = t.tracer.Start(ctx, "s3 "+op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	}
	return ctx, func(err error) {
		t.m.s3Seconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
		// A request canceled by us (a takeover, a client gone) is not
		// S3's failure.
		if err != nil && !errors.Is(err, context.Canceled) {
			t.m.s3Errors.WithLabelValues(op).Inc()
		}
		endSpan(span, err)
	}
}

// RedisScript implements sessionstore.Observer.
func (t *Telemetry) RedisScript(op string, d time.Duration, err error) {
	t.m.redisSeconds.WithLabelValues(op).Observe(d.Seconds())
	if err != nil && !errors.Is(err, context.Canceled) {
		t.m.redisErrors.WithLabelValues(op).Inc()
	}
}

// ProbeSettled counts a probe job settled by a worker of this process
// ("done", "retry", "dead"): probe.Config.Settled.
func (t *Telemetry) ProbeSettled(outcome string) {
	t.m.probeJobs.WithLabelValues(outcome).Inc()
}

// span starts a child span of ctx's named name when tracing, with the
// upload's attributes; end must be called with the outcome. When tracing
// is off it returns ctx and a no-op.
func (t *Telemetry) span(ctx context.Context, name string) (context.Context, func(error)) {
	if t.tracer == nil {
		return ctx, noEnd
	}
	ctx, span := t.tracer.Start(ctx, name, trace.WithAttributes(uploadAttrs(ctx)...))
	return ctx, func(err error) { endSpan(span, err) }
}

func noEnd(error) {}

func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// traceContext reads and writes W3C traceparent / tracestate.
var traceContext = propagation.TraceContext{}

// headerCarrier adapts a fasthttp request header to the propagator.
type headerCarrier struct{ h *fasthttp.RequestHeader }

func (c headerCarrier) Get(key string) string { return string(c.h.Peek(key)) }
func (c headerCarrier) Set(key, value string) { c.h.Set(key, value) }
func (c headerCarrier) Keys() []string {
	var keys []string
	for k := range c.h.All() {
		keys = append(keys, string(k))
	}
	return keys
}

// startRequestSpan starts the span of one request, a child of the
// client's traceparent when it sent one. rq.ctx carries it to the
// handlers' contexts (requestContext).
func (s *Server) startRequestSpan(ctx *fasthttp.RequestCtx, rq *request) {
	parent := traceContext.Extract(s.base, headerCarrier{&ctx.Request.Header})
	rq.ctx, rq.span = s.tel.tracer.Start(parent, rq.method, trace.WithSpanKind(trace.SpanKindServer))
}

// endRequestSpan names the request span after its route (known only once
// routed) and records what the request was about and how it ended.
func endRequestSpan(rq *request, status int) {
	span := rq.span
	span.SetName(rq.method + " " + rq.route)
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", rq.method),
		attribute.String("http.route", rq.route),
		attribute.Int("http.response.status_code", status),
		attribute.String("roughy.request_id", rq.id),
	}
	if rq.uploadID != "" {
		attrs = append(attrs, attribute.String("roughy.upload_id", rq.uploadID))
	}
	if rq.account != "" {
		attrs = append(attrs, attribute.String("roughy.account", rq.account))
	}
	span.SetAttributes(attrs...)
	if status >= 500 {
		span.SetStatus(codes.Error, statusLabel(status))
	}
	span.End()
}

// uploadKey is the context key of the upload a write is about, for the
// attributes of its child spans (S3 parts, commits).
type uploadKey struct{}

type uploadRef struct{ id, account string }

// withUpload marks ctx as about upload id of account, when tracing.
func (s *Server) withUpload(ctx context.Context, id, account string) context.Context {
	if s.tel.tracer == nil {
		return ctx
	}
	return context.WithValue(ctx, uploadKey{}, uploadRef{id, account})
}

func uploadAttrs(ctx context.Context) []attribute.KeyValue {
	u, ok := ctx.Value(uploadKey{}).(uploadRef)
	if !ok {
		return nil
	}
	return []attribute.KeyValue{attribute.String("roughy.upload_id", u.id), attribute.String("roughy.account", u.account)}
}
