package upload

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// headLog is when the latest offset retrieval of each upload began on
// this node. A write that takes an upload's lease after a HEAD of it
// began, although its own request began before, lets go at once
// (ErrTakenOver): its bytes would land after HEAD answered. The head
// fence (Store.OffsetSession, AcquireLeaseFenced) covers the requests
// HEAD cannot see in the store on every node, from the moment they read
// the upload: one on its way to the lease, and the next segment of a
// draft append. headLog adds, on this node, a request that arrived
// before the HEAD but read the upload after it.
type headLog struct {
	mu     sync.Mutex
	at     map[string]time.Time
	pruned time.Time
}

// headForget is how long a HEAD is remembered: longer than a write's
// request can take to reach its lease (it waits TakeoverWait at most).
const headForget = 30 * time.Second

// HeadBegan records that an offset retrieval of upload id begins now,
// before it reads the session.
func (s *Leases) HeadBegan(id string) {
	h := &s.heads
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.at == nil {
		h.at = map[string]time.Time{}
	}
	h.at[id] = now
	if now.Sub(h.pruned) < time.Second {
		return
	}
	h.pruned = now
	for k, t := range h.at {
		if now.Sub(t) > headForget {
			delete(h.at, k)
		}
	}
}

// HeadSince reports whether an offset retrieval of upload id began on
// this node after t (when the write's request began).
func (s *Leases) HeadSince(id string, t time.Time) bool {
	h := &s.heads
	h.mu.Lock()
	defer h.mu.Unlock()
	at, ok := h.at[id]
	return ok && at.After(t)
}

// Settle serves offset retrieval on an upload whose lease is held: it
// takes the lease over (Take: the holder's body is cut, its durable
// prefix commits, it lets go) and releases it at once, so that the
// session read next is one no earlier request still changes. Holders
// without a body (a completion, DELETE, the janitor, a concatenation, a
// direct upload's storage creation) ignore release requests and end by
// themselves: Take waits for them up to TakeoverWait, and if one still
// holds the upload then, Settle returns nil and the offset is answered
// as it stands. sessionstore.ErrNotFound when a DELETE removed the
// upload meanwhile.
func (s *Leases) Settle(ctx context.Context, id string) error {
	l, err := s.Take(ctx, id, 0, false, NoFence)
	switch {
	case err == nil:
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := s.store.ReleaseLease(cctx, l); err != nil {
			s.log.Warn("release lease after offset retrieval", "upload_id", id, "err", err)
		}
		return nil
	case errors.Is(err, sessionstore.ErrNotFound):
		return err
	case errors.Is(err, sessionstore.ErrLocked):
		return nil
	}
	return fmt.Errorf("upload: take lease to report the offset: %w", err)
}
