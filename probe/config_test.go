package probe

import (
	"testing"
	"time"
)

// TestDefaultConfig: a zero Config and DefaultConfig make the same
// worker, with the documented values (the --probe-* flags show them).
func TestDefaultConfig(t *testing.T) {
	for _, c := range []Config{NewWorker(Config{}, nil, nil).cfg, NewWorker(DefaultConfig(), nil, nil).cfg} {
		if c.Runner.Path != "ffprobe" || c.Runner.Timeout != time.Minute || c.MaxAttempts != 5 ||
			c.BaseDelay != time.Second || c.MaxDelay != 5*time.Minute || c.Block != 2*time.Second ||
			c.ReclaimAfter != 90*time.Second || c.Consumer == "" {
			t.Errorf("got %+v, want the documented defaults", c)
		}
	}
}
