package pipeline

import (
	"testing"
	"time"
)

// TestDefaultS3Config: a zero S3Config and DefaultS3Config make the same
// sink, with the documented values (the --s3-* flags show them).
func TestDefaultS3Config(t *testing.T) {
	pool := NewPool(64 << 20)
	for _, cfg := range []S3Config{{}, DefaultS3Config()} {
		cfg.Bucket, cfg.Endpoint, cfg.Region = "b", "http://127.0.0.1:1", "us-east-1"
		s, err := NewS3Sink(t.Context(), cfg, pool)
		if err != nil {
			t.Fatal(err)
		}
		c := s.cfg
		if c.Layout != S3LayoutDefault || c.PartConcurrency != 4 || c.PresignTTL != time.Hour ||
			c.MaxAttempts != 5 || c.StallTimeout != 30*time.Second {
			t.Errorf("got %+v, want the documented defaults", c)
		}
	}
}
