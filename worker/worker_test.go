package worker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

func TestRetryDelay(t *testing.T) {
	r := Retry{Base: time.Second, Max: 10 * time.Second}
	for attempt, want := range []time.Duration{1, 2, 4, 8, 10, 10} {
		if got := r.Delay(attempt); got != want*time.Second {
			t.Errorf("Delay(%d) = %v, want %v", attempt, got, want*time.Second)
		}
	}
	if got := r.Delay(500); got != 10*time.Second {
		t.Errorf("Delay(500) = %v, want the cap", got)
	}
}

// TestRetryAfter: a job is dead-lettered at its MaxAttempts-th failure, or
// when its next try would come past MaxAge after it was queued.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	byCount := Retry{Base: time.Second, Max: time.Minute, MaxAttempts: 5}
	if d, dead := byCount.After(3, time.Time{}, now); dead || d != 8*time.Second {
		t.Errorf("4th failure of 5: got %v, dead %v; want 8s, not dead", d, dead)
	}
	if _, dead := byCount.After(4, time.Time{}, now); !dead {
		t.Error("5th failure of 5: not dead")
	}
	byAge := Retry{Base: 30 * time.Second, Max: time.Hour, MaxAge: 24 * time.Hour}
	if d, dead := byAge.After(0, now.Add(-time.Hour), now); dead || d != 30*time.Second {
		t.Errorf("young job: got %v, dead %v; want 30s, not dead", d, dead)
	}
	if _, dead := byAge.After(0, now.Add(-24*time.Hour+10*time.Second), now); !dead {
		t.Error("a retry 30s away with 10s of MaxAge left: not dead")
	}
	if _, dead := byAge.After(100, now, now); dead {
		t.Error("no MaxAttempts: dead after 101 failures")
	}
	if !byAge.Expired(now.Add(-24*time.Hour), time.Second, now) || byAge.Expired(now, time.Hour, now) {
		t.Error("Expired: wrong side of MaxAge")
	}
}

// TestLoop: the loop backs off from a failing store, waits out an empty
// queue, hands every claimed job to Handle in order, logs a job Handle
// could not settle, and returns once its context ends.
func TestLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	answers := []error{errors.New("connection refused"), sessionstore.ErrEmpty, nil, nil}
	var mu sync.Mutex
	var claims int
	var handled []int
	var logs bytes.Buffer
	l := Loop[int]{
		Name: "test", Consumer: "c", Block: time.Second, ReclaimAfter: time.Minute,
		Claim: func(ctx context.Context, consumer string, block, reclaimAfter time.Duration) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			if consumer != "c" || block != time.Second || reclaimAfter != time.Minute {
				t.Errorf("Claim(%q, %v, %v): not the loop's settings", consumer, block, reclaimAfter)
			}
			claims++
			if claims > len(answers) {
				cancel()
				return 0, ctx.Err()
			}
			return claims, answers[claims-1]
		},
		Handle: func(_ context.Context, job int) error {
			mu.Lock()
			defer mu.Unlock()
			handled = append(handled, job)
			if job == 4 {
				return errors.New("store down")
			}
			return nil
		},
		Unsettled: "test: job not settled",
		Attrs:     func(job int) []any { return []any{"job", job} },
		Logger:    slog.New(slog.NewTextHandler(&logs, nil)),
	}
	l.Run(ctx)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(handled, []int{3, 4}) {
		t.Errorf("handled %v, want [3 4]", handled)
	}
	out := logs.String()
	for _, want := range []string{`msg="test: claim failed" err="connection refused"`, `msg="test: job not settled" job=4 err="store down"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if strings.Count(out, "\n") != 2 {
		t.Errorf("log has other lines than the claim failure and the unsettled job:\n%s", out)
	}
}
