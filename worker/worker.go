// Package worker is what the workers that drain one of the session
// store's durable job queues (probe runs, webhook deliveries) share: the
// claim loop, with its back-off while the store is down, and the retry
// policy that says when a failed job is tried again and when it is
// dead-lettered. What a job is and how it is settled stays with its
// worker (probe, webhook).
package worker

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// Loop claims jobs of type J and hands them to Handle, one at a time,
// until its context ends.
type Loop[J any] struct {
	// Name prefixes its log messages ("probe", "webhook").
	Name string
	// Consumer names this loop in the queue: a job it claimed and did not
	// settle within ReclaimAfter is handed out to another one.
	Consumer     string
	Block        time.Duration
	ReclaimAfter time.Duration
	Claim        sessionstore.ClaimFunc[J]
	// Handle settles one claimed job. An error means the job could not be
	// settled: it stays claimed and is reclaimed later.
	Handle func(ctx context.Context, job J) error
	// Unsettled is the log message of a job Handle could not settle, with
	// the attributes Attrs gives of the job.
	Unsettled string
	Attrs     func(job J) []any
	Logger    *slog.Logger
}

// Run claims and handles jobs until ctx ends. A job cut short by ctx is
// left claimed; the queue hands it out again after ReclaimAfter.
func (l *Loop[J]) Run(ctx context.Context) {
	pause := time.Duration(0)
	for ctx.Err() == nil {
		start := time.Now()
		job, err := l.Claim(ctx, l.Consumer, l.Block, l.ReclaimAfter)
		switch {
		case err == nil:
			pause = 0
			if err := l.Handle(ctx, job); err != nil && ctx.Err() == nil {
				l.Logger.Warn(l.Unsettled, append(l.Attrs(job), "err", err)...)
			}
			continue
		case ctx.Err() != nil:
			return
		case errors.Is(err, sessionstore.ErrEmpty):
			// A store that answers "empty" without blocking must not make
			// the loop spin.
			pause = 0
			if time.Since(start) < 50*time.Millisecond {
				pause = 100 * time.Millisecond
			}
		default:
			// Backend down: back off, up to 5s between claims.
			pause = min(max(2*pause, 250*time.Millisecond), 5*time.Second)
			l.Logger.Warn(l.Name+": claim failed", "err", err, "retry_in", pause)
		}
		if pause > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
		}
	}
}

// Retry decides what becomes of a job whose attempt failed: it is tried
// again after an exponential back-off, or dead-lettered once it was tried
// MaxAttempts times or its next try would come more than MaxAge after it
// was queued (0: no such limit).
type Retry struct {
	// Base is the first delay, doubled on each failure up to Max.
	Base, Max   time.Duration
	MaxAttempts int
	MaxAge      time.Duration
}

// Delay is the retry delay after a job's attempt-th failure (0-based):
// Base·2^attempt, capped at Max.
func (r Retry) Delay(attempt int) time.Duration {
	d := r.Base
	for range attempt {
		d *= 2
		if d >= r.Max {
			return r.Max
		}
	}
	return min(d, r.Max)
}

// After decides a job that failed now after attempts earlier failures and
// was queued at since: the delay before its next try, or dead.
func (r Retry) After(attempts int, since, now time.Time) (delay time.Duration, dead bool) {
	if r.MaxAttempts > 0 && attempts+1 >= r.MaxAttempts {
		return 0, true
	}
	delay = r.Delay(attempts)
	if r.Expired(since, delay, now) {
		return 0, true
	}
	return delay, false
}

// Expired reports whether a job queued at since that waits d from now
// would be tried past MaxAge.
func (r Retry) Expired(since time.Time, d time.Duration, now time.Time) bool {
	return r.MaxAge > 0 && now.Sub(since)+d > r.MaxAge
}
