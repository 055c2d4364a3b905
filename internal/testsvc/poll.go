package testsvc

import (
	"context"
	"time"
)

// WaitFor polls cond every interval until it holds (true) or d has passed
// or ctx is done (false).
func WaitFor(ctx context.Context, d, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(interval)
	}
}
