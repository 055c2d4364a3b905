package main

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"time"
)

// rampDelay is when worker w of n starts: the workers come up evenly over
// ramp (the first at once), so that the number of concurrent uploads
// climbs instead of jumping to -c.
func rampDelay(w, n int, ramp time.Duration) time.Duration {
	if ramp <= 0 || n <= 1 {
		return 0
	}
	return time.Duration(int64(ramp) * int64(w) / int64(n))
}

// startAt is when upload i is due at a target rate of rate uploads per
// second (0: all at once, as fast as the workers take them).
func startAt(i int, rate float64) time.Duration {
	if rate <= 0 {
		return 0
	}
	return time.Duration(float64(i) / rate * float64(time.Second))
}

// dispatch hands upload numbers 0..n-1 to the workers, each no earlier
// than its startAt, and closes jobs at the end. When every worker is busy
// an upload starts late; late counts them.
func dispatch(ctx context.Context, n int, rate float64, start time.Time, jobs chan<- int, late *int64) {
	defer close(jobs)
	for i := range n {
		due := start.Add(startAt(i, rate))
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		select {
		case <-ctx.Done():
			return
		case jobs <- i:
		}
		if rate > 0 && time.Since(due) > time.Second/time.Duration(max(1, int(rate))) {
			*late++
		}
	}
}

// errAborted is how an injected abort ends a PATCH body.
var errAborted = errors.New("loadtest: injected abort")

// aborter decides, with its own seeded generator (so that a run can be
// repeated with -seed), which PATCHes of one upload are aborted and after
// how many of their bytes.
type aborter struct {
	rate float64
	rng  *rand.Rand
}

func newAborter(rate float64, seed uint64, upload int) aborter {
	return aborter{rate: rate, rng: rand.New(rand.NewPCG(seed, uint64(upload)))}
}

// cut says whether to abort a PATCH of n bytes, and after how many bytes
// (at least 1, fewer than n).
func (a aborter) cut(n int64) (int64, bool) {
	if a.rate <= 0 || n < 2 || a.rng.Float64() >= a.rate {
		return 0, false
	}
	return 1 + a.rng.Int64N(n-1), true
}

// cutReaderAt serves src up to limit and then fails with errAborted, so
// that the HTTP client gives the request up (closes the connection) with
// limit bytes of the body sent at most: a client that crashed or lost its
// network mid-PATCH.
type cutReaderAt struct {
	src   io.ReaderAt
	limit int64
}

func (c cutReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= c.limit {
		return 0, errAborted
	}
	if room := c.limit - off; int64(len(p)) > room {
		n, err := c.src.ReadAt(p[:room], off)
		if err == nil {
			err = errAborted
		}
		return n, err
	}
	return c.src.ReadAt(p, off)
}
