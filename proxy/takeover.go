package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// Takeover: the newest request on an upload wins. A PATCH or
// DELETE that finds the upload's lease held asks the holder to let go:
// directly when the holder runs in this process, through the store's
// release requests when it runs on another node. The holder stops reading
// its body (its pending read fails at once), commits what is durable,
// releases the lease and answers; the newer request polls the lease
// meanwhile, for up to Config.TakeoverWait, and then proceeds as usual
// (a PATCH whose Upload-Offset no longer matches gets 409). A holder on a
// dead node needs no answer: the store takes its lease over at once.
//
// HEAD (offset retrieval, TUS and the draft) takes over too, when it finds
// the lease held (Session.Leased: read with the session, no store write
// otherwise): the offset it answers must be accepted by the next append
// (the draft: "The offset MUST be accepted by a subsequent append"). A
// client whose connection died resumes with HEAD at once, while the
// server may still be reading the dead body or committing its durable
// prefix; answering the offset before that settles would send the client
// to an offset that is gone by the time its PATCH arrives (409). So HEAD
// cuts the body, waits for the write to commit and let go, and answers
// after. The cost: a HEAD during a healthy transfer ends that transfer
// (the draft allows it; tusd's HEAD takes the upload's lock too).
// Progress is what the assets API tells (bytes_received), not HEAD.
// A write that holds no lease when HEAD reads the upload (on its way to
// the lease, or between two segments of a draft append) is fenced off
// instead: HEAD grows the upload's head fence, and the write's next
// lease is refused. See docs/design/takeover.md.

// Errors of a write that let go of its upload.
var (
	// errTakenOver: a newer request took the upload over. 409: the
	// upload's state moved on under this request, as for an offset
	// mismatch; tus-js-client recovers by HEAD and resume.
	errTakenOver = errorf(fasthttp.StatusConflict, "upload_taken_over",
		"a newer request on this upload took it over; HEAD the upload and resume")
	// errDeletedUnder: a DELETE terminated the upload while this request
	// wrote to it. Not retryable.
	errDeletedUnder = errorf(fasthttp.StatusNotFound, "upload_deleted", "the upload was deleted while this request wrote to it")
)

// Polling while a holder lets go: the lease is asked for every
// takeoverPoll, and a release request is sent again every takeoverAsk
// (release requests are fire and forget).
const (
	takeoverPoll = 20 * time.Millisecond
	takeoverAsk  = 300 * time.Millisecond
)

// register makes b the body that a release request for upload id cuts
// off; the returned func unregisters it (if still registered).
func (s *Server) register(id string, b *bodyReader) func() {
	s.writersMu.Lock()
	s.writers[id] = b
	s.writersMu.Unlock()
	return func() {
		s.writersMu.Lock()
		if s.writers[id] == b {
			delete(s.writers, id)
		}
		s.writersMu.Unlock()
	}
}

// holding registers l as held by a request of this node until the
// returned func is called: a release request for it finds a known holder
// and never drops it as an orphan. Every request that holds a lease
// registers it (hold does for writes, completions, concatenations and
// the janitor); a PATCH also registers its body (register), which is what
// a release request cuts. Work without a body ends by itself.
func (s *Server) holding(l sessionstore.Lease) func() {
	id := l.SessionID
	s.writersMu.Lock()
	s.held[id] = l.Token
	s.writersMu.Unlock()
	return func() {
		s.writersMu.Lock()
		if tok, ok := s.held[id]; ok && tok == l.Token {
			delete(s.held, id)
		}
		s.writersMu.Unlock()
	}
}

// orphanAsk is the first release request that found no request of this
// node holding an upload, and the lease token it named.
type orphanAsk struct {
	first time.Time
	token int64
}

// orphanAsked records a release request for a lease that no request of
// this node holds; once such requests have come for three quarters of
// TakeoverWait, naming the same token, this node's lease is dropped if it
// is still that token (see onRelease). A request without a token (an
// older node's) never drops anything. Entries older than orphanForget
// start over.
func (s *Server) orphanAsked(r sessionstore.ReleaseRequest) {
	if r.Token == 0 {
		return
	}
	id := r.SessionID
	now := time.Now()
	s.writersMu.Lock()
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
	s.writersMu.Unlock()
	if !drop {
		return
	}
	// A request of this node that takes the upload's lease from now on
	// holds another token: DropLease leaves it alone.
	ctx, cancel := context.WithTimeout(s.base, 5*time.Second)
	defer cancel()
	if err := s.store.DropLease(ctx, id, s.store.Node(), r.Token); err != nil {
		s.log.Warn("drop orphaned lease", "upload_id", id, "err", err)
		return
	}
	s.log.Warn("dropped an orphaned lease of this node for a newer request", "upload_id", id)
}

// orphanForget is how long a release request that found no write is
// remembered (well past TakeoverWait).
const orphanForget = 10 * time.Second

// onRelease serves a release request addressed to this node: the write
// holding the upload stops reading its body. It returns at once.
func (s *Server) onRelease(r sessionstore.ReleaseRequest) {
	s.writersMu.Lock()
	b := s.writers[r.SessionID]
	_, held := s.held[r.SessionID]
	if b != nil || held {
		delete(s.orphans, r.SessionID)
	}
	s.writersMu.Unlock()
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
	cause := errTakenOver
	if r.Delete {
		cause = errDeletedUnder
	}
	if b.cut(cause) {
		s.metrics.takeovers.Add(1)
		s.log.Info("write let go of its upload for a newer request", "upload_id", r.SessionID, "delete", r.Delete)
	}
}

// askRelease sends r to the lease's holder: directly when that is this
// process.
func (s *Server) askRelease(ctx context.Context, holder string, r sessionstore.ReleaseRequest) {
	if holder == s.store.Node() {
		s.onRelease(r)
		return
	}
	if err := s.store.RequestRelease(ctx, holder, r); err != nil {
		s.log.Warn("release request not sent", "upload_id", r.SessionID, "holder", holder, "err", err)
	}
}

// noFence: a lease taken whatever offset retrievals happened (offset
// retrieval's own, a completion, a DELETE).
const noFence = -1

// takeLease takes the upload's lease for a PATCH (reserving parts) or a
// DELETE, taking it over from a request that holds it (see the top of
// this file). After TakeoverWait it gives up with the store's ErrLocked.
// A write passes the head fence its request read (heads): once an offset
// retrieval read the upload since, the store answers ErrFenced, at the
// first try or while waiting, and nothing is taken over.
// An orphaned lease (acquired in the store, its answer lost) is dropped by
// its node while the requests keep coming (see orphanAsked), whether that
// node is this one or another.
func (s *Server) takeLease(ctx context.Context, id string, parts int32, del bool, heads int64) (sessionstore.Lease, error) {
	deadline := time.Now().Add(s.cfg.TakeoverWait)
	var asked time.Time
	for {
		var l sessionstore.Lease
		var err error
		if heads == noFence {
			l, err = s.store.AcquireLease(ctx, id, s.cfg.LeaseTTL, parts)
		} else {
			l, err = s.store.AcquireLeaseFenced(ctx, id, s.cfg.LeaseTTL, parts, heads)
		}
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

// headLog is when the latest offset retrieval of each upload began on
// this node. A write that takes an upload's lease after a HEAD of it
// began, although its own request began before, lets go at once
// (errTakenOver): its bytes would land after HEAD answered. The head
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

// began records that an offset retrieval of upload id begins now.
func (h *headLog) began(id string) {
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

// since reports whether an offset retrieval of upload id began after t.
func (h *headLog) since(id string, t time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	at, ok := h.at[id]
	return ok && at.After(t)
}

// settleHolder serves offset retrieval on an upload whose lease is held:
// it takes the lease over (takeLease: the holder's body is cut, its
// durable prefix commits, it lets go) and releases it at once, so that
// the session read next is one no earlier request still changes. Holders
// without a body (a completion, DELETE, the janitor, a concatenation, a
// direct upload's storage creation) ignore release requests and end by
// themselves: takeLease waits for them up to TakeoverWait, and if one
// still holds the upload then, the offset is answered as it stands.
func (s *Server) settleHolder(ctx context.Context, id string) error {
	l, err := s.takeLease(ctx, id, 0, false, noFence)
	switch {
	case err == nil:
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := s.store.ReleaseLease(cctx, l); err != nil {
			s.log.Warn("release lease after offset retrieval", "upload_id", id, "err", err)
		}
		return nil
	case errors.Is(err, sessionstore.ErrNotFound):
		// A DELETE removed the upload meanwhile.
		return errNotFound
	case errors.Is(err, sessionstore.ErrLocked):
		return nil
	}
	return fmt.Errorf("proxy: take lease to report the offset: %w", err)
}

// freeLate frees the storage of an upload deleted while this node wrote to
// it, once the write ended. The DELETE (or the janitor) frees the storage
// before it deletes the session; when it did not wait for the write to let
// go (the takeover wait ran out: the write's parts were still in flight,
// and the sink lets a part whose body went out whole finish), a part or
// tail that landed after that left a multipart upload or an object
// behind. Write returns only once its parts settled, so freeing again now
// catches them all; the session being gone proves the delete (and so its
// own freeing) happened, so nothing that still exists is freed.
func (s *Server) freeLate(ctx context.Context, sess sessionstore.Session) {
	if !s.deletedUnder(ctx, sess.ID) {
		// Not deleted yet: the DELETE waits for this write's lease and
		// frees the storage after it.
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := s.pipe.Sink().Abort(cctx, uploadOf(sess)); err != nil {
		s.log.Warn("free storage written after a delete", "upload_id", sess.ID, "err", err)
	}
}
