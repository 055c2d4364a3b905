package main

import (
	"errors"
	"testing"
)

// TestTracerProviderConfig: tracing is off without --otlp-endpoint and
// the standard variables, on with either, and a malformed endpoint is a
// usage error.
func TestTracerProviderConfig(t *testing.T) {
	env := func(kv map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
	}
	for _, tc := range []struct {
		name     string
		endpoint string
		env      map[string]string
		wantOn   bool
		wantErr  error
	}{
		{name: "off by default"},
		{name: "empty variable", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ""}},
		{name: "flag", endpoint: "http://127.0.0.1:4318", wantOn: true},
		{name: "standard variable", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, wantOn: true},
		{name: "traces variable", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, wantOn: true},
		{name: "not a URL", endpoint: "127.0.0.1:4318", wantErr: errUsage},
		{name: "wrong scheme", endpoint: "grpc://127.0.0.1:4317", wantErr: errUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp, err := newTracerProvider(t.Context(), tc.endpoint, env(tc.env))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("got error %v, want %v", err, tc.wantErr)
			}
			if got := tp != nil; got != tc.wantOn {
				t.Fatalf("tracing on: got %v, want %v", got, tc.wantOn)
			}
			if tp != nil {
				if err := tp.Shutdown(t.Context()); err != nil {
					t.Error(err)
				}
			}
		})
	}
}
