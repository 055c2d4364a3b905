package webhook

import (
	"testing"
	"time"
)

// TestDefaultConfig: a zero Config and DefaultConfig make the same
// deliverer, and DefaultConfig's values are the documented ones (the
// --webhook-* flags show them).
func TestDefaultConfig(t *testing.T) {
	zero, def := New(Config{}, &fakeStore{}).cfg, New(DefaultConfig(), &fakeStore{}).cfg
	for _, c := range []Config{zero, def} {
		if c.Workers != 4 || c.Timeout != 10*time.Second || c.BaseDelay != 30*time.Second || c.MaxDelay != time.Hour ||
			c.MaxAge != 24*time.Hour || c.Block != 2*time.Second || c.ReclaimAfter != 20*time.Second ||
			c.VerifyFor != 2*time.Minute || c.VerifyDelay != time.Second || c.EndpointConcurrency != 2 ||
			c.AccountConcurrency != 3 || c.PauseAfter != 3 {
			t.Errorf("got %+v, want the documented defaults", c)
		}
	}
}
