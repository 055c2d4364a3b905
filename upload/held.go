package upload

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// Held is the current lease of a write; the renewal goroutine replaces
// it while the write commits with it.
type Held struct {
	mu sync.Mutex
	l  sessionstore.Lease
	// at is when the lease was last taken, renewed or extended by a
	// commit (the start of that call: its end in the store is later).
	at time.Time
}

// Lease is the lease as it now stands.
func (h *Held) Lease() sessionstore.Lease {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.l
}

func (h *Held) set(l sessionstore.Lease, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.l, h.at = l, at
}

// Extended records a commit that started at and extended the lease by
// ttl (Commit.ExtendLease): the renewal that was due is skipped.
func (h *Held) Extended(at time.Time, ttl time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if at.After(h.at) {
		h.l.ExpiresAt, h.at = at.Add(ttl), at
	}
}

// since is how long ago the lease was last taken or extended.
func (h *Held) since() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return time.Since(h.at)
}

// Hold keeps l renewed until release is called; the returned context is
// canceled (with the cause) if the lease is lost. release stops the
// renewal and drops the lease.
//
// The lease is registered as held by this node (Holding) meanwhile, so
// that release requests never drop it as an orphan.
func (s *Leases) Hold(ctx context.Context, l sessionstore.Lease) (h *Held, hctx context.Context, release func()) {
	unhold := s.Holding(l)
	h = &Held{l: l, at: time.Now()}
	hctx, cancel := context.WithCancelCause(ctx)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { s.keep(hctx, cancel, h, stop) })
	return h, hctx, func() {
		close(stop)
		wg.Wait()
		cancel(nil)
		s.release(ctx, h)
		unhold()
	}
}

// keep renews the lease every third of its TTL until stop closes, unless
// a commit extended it within that third (a write committing parts often
// needs no renewals: a round trip less each time). If the lease is lost
// (or cannot be renewed before it expires), it cancels the write: the
// pipeline stops and nothing more is committed.
func (s *Leases) keep(ctx context.Context, cancel context.CancelCauseFunc, h *Held, stop <-chan struct{}) {
	t := time.NewTicker(s.cfg.TTL / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if h.since() < s.cfg.TTL/3 {
			continue
		}
		cur := h.Lease()
		start := time.Now()
		nl, err := s.store.RenewLease(ctx, cur, s.cfg.TTL)
		if err == nil {
			h.set(nl, start)
			continue
		}
		if errors.Is(err, sessionstore.ErrLeaseLost) || time.Now().After(cur.ExpiresAt) {
			s.obs.LeaseLost()
			s.log.Warn("lease lost; stopping write", "upload_id", cur.SessionID, "err", err)
			cancel(fmt.Errorf("upload: renew lease: %w", err))
			return
		}
	}
}

func (s *Leases) release(ctx context.Context, h *Held) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.store.ReleaseLease(cctx, h.Lease()); err != nil {
		s.log.Warn("release lease", "upload_id", h.Lease().SessionID, "err", err)
		return
	}
	s.obs.LeaseReleased()
}
