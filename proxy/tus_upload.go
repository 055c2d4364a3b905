package proxy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/upload"
	"github.com/valyala/fasthttp"
)

// ownSession is the one place that decides whether a session exists for
// the request's account: another account's session is
// sessionstore.ErrNotFound, exactly like an unknown id, so every route
// answers both alike (SPEC: never reveal that it exists).
func (s *Server) ownSession(ctx context.Context, rq *request, id string) (sessionstore.Session, error) {
	return s.ownSessionBy(ctx, rq, id, s.store.Session)
}

// ownSessionBy is ownSession reading the session with read (Store.Session,
// or OffsetSession for offset retrieval).
func (s *Server) ownSessionBy(ctx context.Context, rq *request, id string,
	read func(context.Context, string) (sessionstore.Session, error)) (sessionstore.Session, error) {
	sess, err := read(ctx, id)
	if err == nil && sess.Account != rq.account {
		return sessionstore.Session{}, fmt.Errorf("proxy: session %s of another account: %w", id, sessionstore.ErrNotFound)
	}
	return sess, err
}

// loadSession returns the request account's session id: 404 when unknown
// or another account's (never revealing which), 410 when expired.
func (s *Server) loadSession(ctx context.Context, rq *request, id string) (sessionstore.Session, error) {
	return s.loadSessionBy(ctx, rq, id, s.store.Session)
}

// loadSessionBy is loadSession reading the session with read.
func (s *Server) loadSessionBy(ctx context.Context, rq *request, id string,
	read func(context.Context, string) (sessionstore.Session, error)) (sessionstore.Session, error) {
	sess, err := s.ownSessionBy(ctx, rq, id, read)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return sess, errNotFound
	}
	if err != nil {
		return sess, fmt.Errorf("proxy: load session: %w", err)
	}
	if !sess.Completed && !sess.ExpiresAt.IsZero() && time.Now().After(sess.ExpiresAt) {
		return sess, errExpired
	}
	if !sess.Completed {
		rq.expires = sess.ExpiresAt
	}
	return sess, nil
}

// headSession is the session an offset retrieval reports: completed
// first when its bytes are all stored (finishIfFull), unless a write holds
// it. A request that holds the upload's lease is taken over first
// (upload.Leases.Settle): the offset answered is then one the next append is
// accepted at. A write that holds no lease when the session is read, on
// any node, is fenced off: the read grows the upload's head fence
// (Store.OffsetSession), and that write's next lease is refused
// (upload.ErrTakenOver, see upload.Service.Append).
func (s *Server) headSession(ctx context.Context, rq *request, id string) (sessionstore.Session, error) {
	// Before the session is read: a write of this node whose request
	// began before lets go at its lease (upload.Leases.HeadSince), also when it read the
	// upload after the fence grew.
	s.leases.HeadBegan(id)
	sess, err := s.loadSessionBy(ctx, rq, id, s.store.OffsetSession)
	if err != nil {
		return sess, err
	}
	if sess.Leased && !sess.Completed {
		if err := s.leases.Settle(ctx, id); errors.Is(err, sessionstore.ErrNotFound) {
			// A DELETE removed the upload meanwhile.
			return sess, errNotFound
		} else if err != nil {
			return sess, err
		}
		if sess, err = s.loadSession(ctx, rq, id); err != nil {
			return sess, err
		}
	}
	if fin, err := s.finishIfFull(ctx, sess); err == nil {
		sess = fin
	} else if !errors.Is(err, sessionstore.ErrLocked) {
		return sess, err
	}
	return sess, nil
}

// tusHead serves HEAD: where to resume.
func (s *Server) tusHead(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, id string) error {
	sess, err := s.headSession(ctx, rq, id)
	if err != nil {
		return err
	}
	h := &rc.Response.Header
	h.Set("Cache-Control", "no-store")
	h.Set("Upload-Offset", strconv.FormatInt(sess.Offset, 10))
	if sess.Length >= 0 {
		h.Set("Upload-Length", strconv.FormatInt(sess.Length, 10))
	} else {
		h.Set("Upload-Defer-Length", "1")
	}
	if sess.Metadata != "" {
		h.Set("Upload-Metadata", sess.Metadata)
	}
	if !sess.Completed {
		h.Set("Upload-Expires", sess.ExpiresAt.UTC().Format(httpTime))
	}
	switch {
	case sess.Partial:
		h.Set("Upload-Concat", "partial")
	case sess.ConcatHeader != "":
		// As received: the client compares it with what it sent.
		h.Set("Upload-Concat", sess.ConcatHeader)
	case len(sess.ConcatOf) > 0:
		// Stored before the header was kept: its partials' URLs.
		base := s.baseURL(rc)
		var b strings.Builder
		b.WriteString("final;")
		for i, p := range sess.ConcatOf {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(base + uploadsPath + "/" + p)
		}
		h.Set("Upload-Concat", b.String())
	}
	rc.SetStatusCode(fasthttp.StatusOK)
	return nil
}

// tusDelete serves DELETE (termination): frees the stored bytes and
// soft-deletes the asset. A session that is already gone, or another
// account's, is a 204 that changes nothing.
func (s *Server) tusDelete(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, id string) error {
	sess, err := s.ownSession(ctx, rq, id)
	switch {
	case errors.Is(err, sessionstore.ErrNotFound):
		// A DELETE retried after a node died between deleting and
		// releasing releases what is left (only this account's).
		s.releaseQuota(ctx, rq.account, id)
		rc.SetStatusCode(fasthttp.StatusNoContent)
		return nil
	case err != nil:
		return fmt.Errorf("proxy: load session: %w", err)
	}
	// A write in flight lets go first (takeover.go): it stops reading and
	// answers 404, and nothing more is stored after the storage is freed.
	// If it does not let go in time, the DELETE goes on anyway: deleting
	// the session drops its lease, so the write commits nothing more.
	l, err := s.leases.Take(ctx, id, 0, true, upload.NoFence)
	switch {
	case err == nil:
		// The write may have stored more (a new tail object) meanwhile.
		sess = l.Session
	case errors.Is(err, sessionstore.ErrNotFound):
		rc.SetStatusCode(fasthttp.StatusNoContent)
		return nil
	case !errors.Is(err, sessionstore.ErrLocked):
		return fmt.Errorf("proxy: take lease to delete: %w", err)
	}
	if l.Token != 0 {
		// Held (renewed, and known to release requests as this node's:
		// never dropped as an orphan) until the DELETE ends; a DELETE that
		// fails half way lets go of it, so that its retry (or a resume)
		// finds the upload free. One that succeeds drops it with the
		// session.
		_, hctx, release := s.leases.Hold(ctx, l)
		defer release()
		ctx = hctx
	}
	// Storage first: if the store then fails, a retried DELETE still finds
	// the session and frees nothing twice (Abort is idempotent).
	if err := s.pipe.Sink().Abort(ctx, uploadOf(sess)); err != nil {
		return fmt.Errorf("proxy: free storage: %w", leaseCause(ctx, err))
	}
	// With the lease, the session is deleted only while it is still this
	// DELETE's: one lost during a slow abort may have let a newer PATCH
	// commit (423: the retry starts over).
	if err := s.deleteUpload(ctx, sess, sessionstore.EventAssetDeleted, l); err != nil && !errors.Is(err, sessionstore.ErrNotFound) {
		return fmt.Errorf("proxy: delete upload: %w", leaseCause(ctx, err))
	}
	if l.Token == 0 {
		// The write did not let go in time, and may have had a part in
		// flight: one that landed between the abort above and the delete
		// is freed now; the write itself frees any that lands later, once
		// it finds the session gone (upload.Service.Append).
		if err := s.pipe.Sink().Abort(ctx, uploadOf(sess)); err != nil {
			s.log.Warn("free storage again after a delete", "upload_id", id, "err", err)
		}
	}
	s.releaseQuota(ctx, rq.account, id)
	s.metrics.deleted.Add(1)
	rc.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

// leaseCause is err, or why hold canceled ctx when it did (the lease was
// lost: a 423 rather than a canceled request's 500).
func leaseCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return fmt.Errorf("%w (%w)", cause, err)
	}
	return err
}
