package upload

import (
	"context"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// orphanAsk is the first release request that found no request of this
// node holding an upload, and the lease token it named.
type orphanAsk struct {
	first time.Time
	token int64
}

// orphanForget is how long a release request that found no write is
// remembered (well past TakeoverWait).
const orphanForget = 10 * time.Second

// orphanAsked records a release request for a lease that no request of
// this node holds; once such requests have come for three quarters of
// TakeoverWait, naming the same token, this node's lease is dropped if it
// is still that token. A request without a token (an older node's) never
// drops anything. Entries older than orphanForget start over.
func (s *Leases) orphanAsked(r sessionstore.ReleaseRequest) {
	if r.Token == 0 {
		return
	}
	id := r.SessionID
	now := time.Now()
	s.mu.Lock()
	for k, a := range s.orphans {
		if now.Sub(a.first) > orphanForget {
			delete(s.orphans, k)
		}
	}
	a, seen := s.orphans[id]
	if !seen || a.token != r.Token {
		a, seen = orphanAsk{first: now, token: r.Token}, false
		s.orphans[id] = a
	}
	_, held := s.held[id]
	drop := seen && now.Sub(a.first) >= s.cfg.TakeoverWait*3/4 && !held && s.writers[id] == nil
	if drop {
		delete(s.orphans, id)
	}
	s.mu.Unlock()
	if !drop {
		return
	}
	// A request of this node that takes the upload's lease from now on
	// holds another token: DropLease leaves it alone.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.store.DropLease(ctx, id, s.store.Node(), r.Token); err != nil {
		s.log.Warn("drop orphaned lease", "upload_id", id, "err", err)
		return
	}
	s.log.Warn("dropped an orphaned lease of this node for a newer request", "upload_id", id)
}
