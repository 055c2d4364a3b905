package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/upload"
	"github.com/valyala/fasthttp"
)

// Takeover: the newest request on an upload wins, and offset retrieval
// takes over too (upload.Leases; docs/design/takeover.md). This file is
// the proxy's side of it: what the client is answered when its write let
// go, and the server's metrics and bodies as the leases see them.

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

// newLeases makes the node's leases (upload.Leases) report to the
// server's metrics and log.
func (s *Server) newLeases() *upload.Leases {
	return upload.NewLeases(s.store, upload.LeaseConfig{TTL: s.cfg.LeaseTTL, TakeoverWait: s.cfg.TakeoverWait},
		s.log, leaseMetrics{s.metrics})
}

// leaseMetrics tells the server's metrics what the leases do.
type leaseMetrics struct{ m *metrics }

func (o leaseMetrics) TookOver()      { o.m.takeovers.Add(1) }
func (o leaseMetrics) LeaseLost()     { o.m.lost.Inc() }
func (o leaseMetrics) LeaseReleased() { o.m.released.Inc() }

// releasable is a write's request body as a release request cuts it:
// its reads fail with the error the client is answered.
type releasable struct{ b *bodyReader }

// Cut cuts the body with the answer for cause (upload.ErrDeleted or
// upload.ErrTakenOver).
func (r releasable) Cut(cause error) bool {
	if errors.Is(cause, upload.ErrDeleted) {
		return r.b.cut(errDeletedUnder)
	}
	return r.b.cut(errTakenOver)
}

// register makes b the body a release request for upload id cuts.
func (s *Server) register(id string, b *bodyReader) func() {
	return s.leases.Register(id, releasable{b})
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
