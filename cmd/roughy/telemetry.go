package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// otlpEnv are the standard OpenTelemetry variables that turn tracing on
// without --otlp-endpoint; the exporter reads them (and the other
// OTEL_EXPORTER_OTLP_* ones: headers, timeout, certificates) itself.
var otlpEnv = []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}

// newTracerProvider returns the provider of `serve`'s spans, exported by
// OTLP over HTTP (protobuf), or nil when tracing is off: no
// --otlp-endpoint (ROUGHY_OTLP_ENDPOINT) and none of otlpEnv set.
// endpoint is a base URL like OTEL_EXPORTER_OTLP_ENDPOINT's: the traces
// go to its path + /v1/traces. The service name is "roughy" unless
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise; sampling
// follows OTEL_TRACES_SAMPLER (default: always, or as the caller's
// traceparent says).
func newTracerProvider(ctx context.Context, endpoint string, lookup func(string) (string, bool)) (*sdktrace.TracerProvider, error) {
	var opts []otlptracehttp.Option
	if endpoint != "" {
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%w: --otlp-endpoint %q: want an http:// or https:// URL", errUsage, endpoint)
		}
		u.Path = strings.TrimRight(u.Path, "/") + "/v1/traces"
		opts = append(opts, otlptracehttp.WithEndpointURL(u.String()))
	} else if !anySet(lookup, otlpEnv...) {
		return nil, nil
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("roughy: otlp exporter: %w", err)
	}
	res, err := resource.Merge(
		resource.NewSchemaless(attribute.String("service.name", "roughy"), attribute.String("service.version", version)),
		resource.Environment(),
	)
	if err != nil {
		return nil, fmt.Errorf("roughy: otlp resource: %w", err)
	}
	// The batcher exports in the background: a slow or absent collector
	// costs memory up to its queue (then spans are dropped), never
	// request latency.
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

func anySet(lookup func(string) (string, bool), names ...string) bool {
	for _, n := range names {
		if v, ok := lookup(n); ok && v != "" {
			return true
		}
	}
	return false
}

// flushTimeout bounds the export of the last spans at shutdown.
const flushTimeout = 5 * time.Second
