package upload

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// LeaseStore is what Leases needs of the session store.
type LeaseStore interface {
	AcquireLease(ctx context.Context, id string, ttl time.Duration, parts int32) (sessionstore.Lease, error)
	AcquireLeaseFenced(ctx context.Context, id string, ttl time.Duration, parts int32, fence int64) (sessionstore.Lease, error)
	RenewLease(ctx context.Context, l sessionstore.Lease, ttl time.Duration) (sessionstore.Lease, error)
	ReleaseLease(ctx context.Context, l sessionstore.Lease) error
	DropLease(ctx context.Context, id, node string, token int64) error
	Node() string
	RequestRelease(ctx context.Context, holder string, r sessionstore.ReleaseRequest) error
	WatchReleases(ctx context.Context, fn func(sessionstore.ReleaseRequest)) (stop func(), err error)
}

// LeaseConfig is how long leases live and takeovers wait.
type LeaseConfig struct {
	// TTL is how long a lease lives without renewal.
	TTL time.Duration
	// TakeoverWait is how long a request waits for the holder of its
	// upload to let go.
	TakeoverWait time.Duration
}

// Observer is told what the leases do (the server's metrics).
type Observer interface {
	// TookOver: a write of this node let go of its upload for a newer
	// request.
	TookOver()
	// LeaseLost: a write's lease could not be renewed.
	LeaseLost()
	// LeaseReleased: a holder released its lease.
	LeaseReleased()
}

// Cutter is a write's request body as a release request sees it: Cut
// makes its pending and later reads fail with cause (ErrTakenOver or
// ErrDeleted) and reports whether it was the first cut.
type Cutter interface {
	Cut(cause error) bool
}

// NoFence takes a lease whatever offset retrievals happened (offset
// retrieval's own, a completion, a DELETE): see Leases.Take.
const NoFence = -1

// Leases is the lease-and-takeover side of the uploads of one node: the
// newest request on an upload wins. A request that finds the upload's
// lease held asks the holder to let go: directly when the holder runs in
// this process, through the store's release requests when it runs on
// another node. The holder's body read fails at once (Cutter.Cut), the
// write commits what is durable, releases the lease and answers; the
// newer request polls the lease meanwhile, for up to TakeoverWait. A
// holder on a dead node needs no answer: the store takes its lease over.
//
// Offset retrieval takes over too (Settle): the offset it answers must be
// accepted by the next append. A write that holds no lease when HEAD
// reads the upload is fenced off instead (Store.OffsetSession grows the
// upload's head fence; Take with the fence the request read is refused),
// and on this node HeadBegan/HeadSince add the requests that began
// before a HEAD but read the upload after it.
type Leases struct {
	store LeaseStore
	cfg   LeaseConfig
	log   *slog.Logger
	obs   Observer

	mu sync.Mutex
	// writers are the bodies of the writes holding an upload's lease on
	// this node, by upload id: what a release request cuts off.
	writers map[string]Cutter
	// held are the leases the requests of this node hold, by upload id
	// (token): see Holding.
	held map[string]int64
	// orphans are uploads whose release was asked of this node while no
	// request held them, by first request (orphanAsked).
	orphans map[string]orphanAsk
	heads   headLog
}

// NewLeases returns the leases of a node over store.
func NewLeases(store LeaseStore, cfg LeaseConfig, log *slog.Logger, obs Observer) *Leases {
	return &Leases{store: store, cfg: cfg, log: log, obs: obs,
		writers: map[string]Cutter{}, held: map[string]int64{}, orphans: map[string]orphanAsk{}}
}

// Node is the node id the store records as the holder of this node's
// leases.
func (s *Leases) Node() string { return s.store.Node() }

// Watch serves the release requests addressed to this node (OnRelease)
// until stop is called; it returns once they arrive.
func (s *Leases) Watch(ctx context.Context) (stop func(), err error) {
	return s.store.WatchReleases(ctx, s.OnRelease)
}

// Polling while a holder lets go: the lease is asked for every
// takeoverPoll, and a release request is sent again every takeoverAsk
// (release requests are fire and forget).
const (
	takeoverPoll = 20 * time.Millisecond
	takeoverAsk  = 300 * time.Millisecond
)

// Register makes b the body that a release request for upload id cuts
// off; the returned func unregisters it (if still registered).
func (s *Leases) Register(id string, b Cutter) func() {
	s.mu.Lock()
	s.writers[id] = b
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		if s.writers[id] == b {
			delete(s.writers, id)
		}
		s.mu.Unlock()
	}
}

// Holding registers l as held by a request of this node until the
// returned func is called: a release request for it finds a known holder
// and never drops it as an orphan. Every request that holds a lease
// registers it (Hold does); a write also registers its body (Register),
// which is what a release request cuts. Work without a body ends by
// itself.
func (s *Leases) Holding(l sessionstore.Lease) func() {
	id := l.SessionID
	s.mu.Lock()
	s.held[id] = l.Token
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		if tok, ok := s.held[id]; ok && tok == l.Token {
			delete(s.held, id)
		}
		s.mu.Unlock()
	}
}

// OnRelease serves a release request addressed to this node: the write
// holding the upload stops reading its body. It returns at once.
func (s *Leases) OnRelease(r sessionstore.ReleaseRequest) {
	s.mu.Lock()
	b := s.writers[r.SessionID]
	_, held := s.held[r.SessionID]
	if b != nil || held {
		delete(s.orphans, r.SessionID)
	}
	s.mu.Unlock()
	if b == nil {
		if held {
			// A completion, concatenation, DELETE or the janitor: it has
			// no body to cut and ends by itself; its lease is no orphan.
			return
		}
		// No request of this node holds the lease: it is being released
		// anyway, or is an orphan (acquired in the store, its answer lost
		// in a Redis outage). An asker repeats its request every
		// takeoverAsk while it waits; when they keep coming for most of
		// its wait and still no request holds the upload, the lease is
		// dropped.
		s.orphanAsked(r)
		return
	}
	cause := ErrTakenOver
	if r.Delete {
		cause = ErrDeleted
	}
	if b.Cut(cause) {
		s.obs.TookOver()
		s.log.Info("write let go of its upload for a newer request", "upload_id", r.SessionID, "delete", r.Delete)
	}
}

// askRelease sends r to the lease's holder: directly when that is this
// process.
func (s *Leases) askRelease(ctx context.Context, holder string, r sessionstore.ReleaseRequest) {
	if holder == s.store.Node() {
		s.OnRelease(r)
		return
	}
	if err := s.store.RequestRelease(ctx, holder, r); err != nil {
		s.log.Warn("release request not sent", "upload_id", r.SessionID, "holder", holder, "err", err)
	}
}

// Take takes the upload's lease for a write (reserving parts) or a
// DELETE (del), taking it over from a request that holds it. After
// TakeoverWait it gives up with the store's ErrLocked. A write passes the
// head fence its request read (heads; NoFence for none): once an offset
// retrieval read the upload since, the store answers ErrFenced, at the
// first try or while waiting, and nothing is taken over. An orphaned
// lease (acquired in the store, its answer lost) is dropped by its node
// while the requests keep coming (orphanAsked), whether that node is this
// one or another.
func (s *Leases) Take(ctx context.Context, id string, parts int32, del bool, heads int64) (sessionstore.Lease, error) {
	deadline := time.Now().Add(s.cfg.TakeoverWait)
	var asked time.Time
	for {
		l, err := s.acquire(ctx, id, parts, heads)
		le, locked := errors.AsType[*sessionstore.LockedError](err)
		if !locked || !time.Now().Before(deadline) {
			return l, err
		}
		// Asked often enough that the requests span the three quarters
		// of the wait after which an orphan is dropped (orphanAsked).
		if time.Since(asked) >= min(takeoverAsk, s.cfg.TakeoverWait/5) {
			asked = time.Now()
			s.askRelease(ctx, le.Holder, sessionstore.ReleaseRequest{SessionID: id, Delete: del, Token: le.Token})
		}
		t := time.NewTimer(takeoverPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return l, err
		case <-t.C:
		}
	}
}

// Acquire takes the lease once, without taking it over: ErrLocked when
// a request holds it (a later segment of a write, the janitor).
func (s *Leases) Acquire(ctx context.Context, id string, parts int32, heads int64) (sessionstore.Lease, error) {
	return s.acquire(ctx, id, parts, heads)
}

func (s *Leases) acquire(ctx context.Context, id string, parts int32, heads int64) (sessionstore.Lease, error) {
	if heads == NoFence {
		return s.store.AcquireLease(ctx, id, s.cfg.TTL, parts)
	}
	return s.store.AcquireLeaseFenced(ctx, id, s.cfg.TTL, parts, heads)
}
