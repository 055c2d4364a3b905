package tusclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Retry is the retry policy of Send: a retryable failure (see Retryable)
// waits with exponential backoff, or the server's Retry-After, up to
// Retries failures in a row.
type Retry struct {
	Retries     int
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// OnRetry, when set, is told each failure that will be tried again
	// and the wait before that.
	OnRetry func(err error, wait time.Duration)
}

// GiveUpError is a retryable failure that came once too often in a row.
type GiveUpError struct {
	Tries int
	Err   error
}

func (e *GiveUpError) Error() string {
	return fmt.Sprintf("tusclient: giving up after %d tries: %v", e.Tries, e.Err)
}

func (e *GiveUpError) Unwrap() error { return e.Err }

// Do runs fn until it succeeds, fails for good, or fails too often.
func (r Retry) Do(ctx context.Context, fn func() error) error {
	failures := 0
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if err := r.Failed(ctx, &failures, err); err != nil {
			return err
		}
	}
}

// Failed counts a failure and waits before the next try. It returns the
// error to give up with, or nil to try again: ctx's error, err itself
// when it is not retryable, a *GiveUpError after too many in a row.
func (r Retry) Failed(ctx context.Context, failures *int, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if !Retryable(err) {
		return err
	}
	*failures++
	if *failures > r.Retries {
		return &GiveUpError{Tries: *failures, Err: err}
	}
	wait := Backoff(*failures, r.BackoffBase, r.BackoffMax)
	if se, ok := errors.AsType[*StatusError](err); ok && se.RetryAfter > 0 {
		wait = min(se.RetryAfter, r.BackoffMax)
	}
	if r.OnRetry != nil {
		r.OnRetry(err, wait)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Backoff is the wait before try n+1: base·2^(n-1), at most maxWait.
func Backoff(n int, base, maxWait time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < maxWait; i++ {
		d *= 2
	}
	return min(d, maxWait)
}

// Send uploads src[off:size] to uploadURL in ChunkSize PATCHes. After a
// failed PATCH it asks the server where to go on (HEAD), since the server
// may have kept part of the body; HEAD and PATCH failures count together
// under r, and an acknowledged PATCH resets the count.
func (c *Client) Send(ctx context.Context, uploadURL string, src io.ReaderAt, off, size int64, r Retry) error {
	if c.ChunkSize <= 0 {
		return fmt.Errorf("%s: ChunkSize must be > 0", c.name())
	}
	acked := off
	needHead := false
	failures := 0
	for acked < size {
		if needHead {
			got, _, err := c.Head(ctx, uploadURL)
			if err != nil {
				if err := r.Failed(ctx, &failures, err); err != nil {
					return err
				}
				continue
			}
			acked, needHead = got, false
			c.acked(acked, false)
			continue
		}
		got, err := c.Patch(ctx, uploadURL, src, acked, min(c.ChunkSize, size-acked))
		if err != nil {
			c.acked(acked, false)
			needHead = true
			if err := r.Failed(ctx, &failures, err); err != nil {
				return err
			}
			continue
		}
		failures = 0
		acked = got
		c.acked(acked, true)
	}
	return nil
}

func (c *Client) acked(off int64, patched bool) {
	if c.OnAcked != nil {
		c.OnAcked(off, patched)
	}
}
