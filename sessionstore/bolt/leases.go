package bolt

import (
	"context"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/roughy/ingest/sessionstore"
)

// nextToken returns a fencing token larger than every earlier one, in this
// process and in every earlier process on the same file. Caller holds mu.
func (l *Store) nextToken() int64 {
	l.counter++
	return l.epoch<<32 | l.counter
}

// AcquireLease takes the upload's lease for ttl and durably reserves parts
// part numbers.
func (l *Store) AcquireLease(ctx context.Context, id string, ttl time.Duration, parts int32) (sessionstore.Lease, error) {
	return l.acquireLease(ctx, id, ttl, parts, -1)
}

// acquireLease takes the lease; fence < 0 checks no head fence.
func (l *Store) acquireLease(ctx context.Context, id string, ttl time.Duration, parts int32, fence int64) (sessionstore.Lease, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.Lease{}, err
	}
	if parts < 0 {
		return sessionstore.Lease{}, fmt.Errorf("sessionstore: local acquire lease: %d parts: %w", parts, sessionstore.ErrPartsExhausted)
	}
	l.mu.Lock()
	heads := l.heads.fence(id)
	if err := l.refusal(id, fence, heads); err != nil {
		l.mu.Unlock()
		return sessionstore.Lease{}, err
	}
	token := l.nextToken()
	// The pending entry keeps other acquirers out while the reservation is
	// written, without holding mu during the fsync.
	l.leases[id] = localLease{token: token, expires: time.Now().Add(ttl), pending: true}
	l.mu.Unlock()

	first, snap, err := l.reserveParts(id, parts)

	l.mu.Lock()
	defer l.mu.Unlock()
	cur, ok := l.leases[id]
	if !ok || cur.token != token { // deleted meanwhile
		if err == nil {
			err = fmt.Errorf("sessionstore: local acquire lease %s: %w", id, sessionstore.ErrNotFound)
		}
		return sessionstore.Lease{}, err
	}
	if err != nil {
		delete(l.leases, id)
		return sessionstore.Lease{}, err
	}
	cur.pending = false
	cur.expires = time.Now().Add(ttl)
	l.leases[id] = cur
	// As it stood when the lease was taken: an offset retrieval since
	// found the lease (pending) held.
	snap.HeadFence = heads
	return sessionstore.Lease{SessionID: id, Token: token, FirstPart: first, Parts: parts, ExpiresAt: cur.expires,
		Holder: l.node, Session: snap}, nil
}

// reserveParts reads upload id and durably reserves parts part numbers
// from its NextPart (none when parts is 0, in a read transaction). It
// returns the first reserved number and the session as written.
func (l *Store) reserveParts(id string, parts int32) (int32, sessionstore.Session, error) {
	var first int32
	var snap sessionstore.Session
	reserve := func(tx *bbolt.Tx) error {
		s, err := boltSession(tx, id)
		if err != nil {
			return err
		}
		first = max(s.NextPart, 1)
		snap = s
		if parts == 0 {
			return nil
		}
		if int64(first)+int64(parts)-1 > sessionstore.MaxPartNumber {
			return fmt.Errorf("next part %d + %d: %w", first, parts, sessionstore.ErrPartsExhausted)
		}
		s.NextPart = first + parts
		snap = s
		return boltPut(tx.Bucket(boltBucketSessions), []byte(id), s)
	}
	if parts == 0 {
		err := l.view("acquire lease", reserve)
		return first, snap, err
	}
	err := l.update("acquire lease", reserve)
	return first, snap, err
}

// Node returns this process's node id. Every lease of an embedded store is
// held by it: one process owns the bbolt file.
func (l *Store) Node() string { return l.node }

// RequestRelease hands r to this process's watchers when holder is this
// node; a request for another node (a process that has ended) has nobody
// to reach and is dropped.
func (l *Store) RequestRelease(_ context.Context, holder string, r sessionstore.ReleaseRequest) error {
	if holder != l.node {
		return nil
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	for _, fn := range l.releaseWatchers {
		fn(r)
	}
	return nil
}

// WatchReleases registers fn for this node's release requests.
func (l *Store) WatchReleases(_ context.Context, fn func(sessionstore.ReleaseRequest)) (func(), error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	id := l.nextW
	l.nextW++
	l.releaseWatchers[id] = fn
	return func() {
		l.wmu.Lock()
		defer l.wmu.Unlock()
		delete(l.releaseWatchers, id)
	}, nil
}

// holds reports whether ls is the upload's current, unexpired lease.
// Caller holds mu.
func (l *Store) holds(ls sessionstore.Lease) bool {
	cur, ok := l.leases[ls.SessionID]
	return ok && !cur.pending && cur.token == ls.Token && time.Now().Before(cur.expires)
}

// RenewLease extends a held lease by ttl from now.
func (l *Store) RenewLease(ctx context.Context, ls sessionstore.Lease, ttl time.Duration) (sessionstore.Lease, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.Lease{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.holds(ls) {
		return sessionstore.Lease{}, fmt.Errorf("sessionstore: local renew lease %s: %w", ls.SessionID, sessionstore.ErrLeaseLost)
	}
	ls.ExpiresAt = time.Now().Add(ttl)
	l.leases[ls.SessionID] = localLease{token: ls.Token, expires: ls.ExpiresAt}
	return ls, nil
}

// DropLease drops the upload's lease when node is this process (the
// holder of every embedded lease) and its token is token.
func (l *Store) DropLease(_ context.Context, id, node string, token int64) error {
	if node != l.node {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.leases[id]; ok && !cur.pending && cur.token == token {
		delete(l.leases, id)
	}
	return nil
}

// ReleaseLease drops the lease if it is still the current one.
func (l *Store) ReleaseLease(_ context.Context, ls sessionstore.Lease) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.leases[ls.SessionID]; ok && cur.token == ls.Token {
		delete(l.leases, ls.SessionID)
	}
	return nil
}
