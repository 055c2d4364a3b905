package bolt

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/roughy/ingest/sessionstore"
)

// localHeads are the head fences of the embedded store (sessionstore.Session.HeadFence).
// They live in memory: a fence only matters to requests in flight, and
// a restart ends them all. Every fence is drawn from one counter, so a
// fence that was forgotten (reads 0) and grows again is past every value
// a request read before: forgetting never lets a write through that an
// offset retrieval fenced off, as long as that write reaches its lease
// within localHeadForget. Guarded by Store.mu.
type localHeads struct {
	seq    int64
	at     map[string]localHead
	pruned time.Time
}

type localHead struct {
	fence int64
	at    time.Time
}

// localHeadForget is how long an upload's fence is kept after its last
// offset retrieval: far past the time a request takes from reading the
// upload to its lease (at most the takeover wait), or from one segment of
// a long append to the next (none: the next follows at once).
const localHeadForget = 10 * time.Minute

// fence is upload id's head fence (0: none kept).
func (h *localHeads) fence(id string) int64 { return h.at[id].fence }

// grow gives upload id a fence above every earlier one and answers it.
func (h *localHeads) grow(id string) int64 {
	now := time.Now()
	if h.at == nil {
		h.at = map[string]localHead{}
	}
	if now.Sub(h.pruned) > time.Minute {
		h.pruned = now
		for k, v := range h.at {
			if now.Sub(v.at) > localHeadForget {
				delete(h.at, k)
			}
		}
	}
	h.seq++
	h.at[id] = localHead{fence: h.seq, at: now}
	return h.seq
}

// forget drops a deleted upload's fence.
func (h *localHeads) forget(id string) { delete(h.at, id) }

// OffsetSession is Session for offset retrieval: it grows the upload's
// head fence and reads whether the lease is held in one step under mu,
// then reads the session. A write whose lease is not taken by then is
// fenced off (AcquireLeaseFenced); one that holds it shows as Leased; so
// no bytes of an earlier request commit after the read unless HEAD sees
// their lease.
func (l *Store) OffsetSession(ctx context.Context, id string) (sessionstore.Session, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.Session{}, err
	}
	l.mu.Lock()
	cur, ok := l.leases[id]
	leased := ok && (cur.pending || time.Now().Before(cur.expires))
	fence := l.heads.grow(id)
	l.mu.Unlock()
	var s sessionstore.Session
	err := l.view("offset session", func(tx *bbolt.Tx) error {
		var err error
		s, err = boltSession(tx, id)
		return err
	})
	if err != nil {
		l.mu.Lock()
		if l.heads.fence(id) == fence {
			// No such upload: keep no fence for it.
			l.heads.forget(id)
		}
		l.mu.Unlock()
		return sessionstore.Session{}, err
	}
	s.Leased, s.HeadFence = leased, fence
	return s, nil
}

// AcquireLeaseFenced is AcquireLease refused with ErrFenced when the
// upload's head fence has grown past fence.
func (l *Store) AcquireLeaseFenced(ctx context.Context, id string, ttl time.Duration, parts int32, fence int64) (sessionstore.Lease, error) {
	if fence < 0 {
		return sessionstore.Lease{}, fmt.Errorf("sessionstore: local acquire lease %s: fence %d: %w", id, fence, sessionstore.ErrFenced)
	}
	return l.acquireLease(ctx, id, ttl, parts, fence)
}

// refusal is why upload id's lease cannot be taken now by a request that
// read the head fence fence (< 0: none) while it is heads: ErrFenced,
// checked first, or a *LockedError; nil when it can. Caller holds mu.
func (l *Store) refusal(id string, fence, heads int64) error {
	if fence >= 0 && heads > fence {
		return fmt.Errorf("sessionstore: local acquire lease %s: head fence %d past %d: %w", id, heads, fence, sessionstore.ErrFenced)
	}
	if cur, ok := l.leases[id]; ok && (cur.pending || time.Now().Before(cur.expires)) {
		return &sessionstore.LockedError{SessionID: id, Holder: l.node, Token: cur.token}
	}
	return nil
}
