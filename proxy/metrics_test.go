package proxy

import (
	"context"
	"testing"
	"time"
)

// TestMetricsHotPathAllocs: recording a request, a commit or a Redis
// call allocates nothing once its label set exists, with tracing off
// (keep the per-request overhead small); an S3 request, one per
// part of at least 5 MiB, allocates its done func.
func TestMetricsHotPathAllocs(t *testing.T) {
	tel := NewTelemetry(nil)
	m := tel.m
	ctx := context.Background()
	budget := map[string]float64{"s3": 1}
	for name, f := range map[string]func(){
		"request": func() { m.observe("tus_upload", "PATCH", 204, time.Millisecond) },
		"commit":  func() { m.commitSeconds.Observe(0.001) },
		"s3": func() {
			c, done := tel.StartS3(ctx, "UploadPart", 3)
			_ = c
			done(nil)
		},
		"redis": func() { tel.RedisScript("commit", time.Millisecond, nil) },
		"span":  func() { _, end := tel.span(ctx, "commit"); end(nil) },
	} {
		f()
		if got := testing.AllocsPerRun(100, f); got > budget[name] {
			t.Errorf("%s: got %v allocations per call, want at most %v", name, got, budget[name])
		}
	}
}
