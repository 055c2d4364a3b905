package proxy

import (
	"context"
	"strconv"
	"strings"

	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// ownSession is the request account's upload id (upload.Service.Own):
// another account's is sessionstore.ErrNotFound exactly like an unknown
// id, so every route answers both alike (never revealing that it
// exists).
func (s *Server) ownSession(ctx context.Context, rq *request, id string) (sessionstore.Session, error) {
	return s.svc.Own(ctx, rq.account, id)
}

// loadSession returns the request account's session id: 404 when unknown
// or another account's (never revealing which), 410 when expired.
func (s *Server) loadSession(ctx context.Context, rq *request, id string) (sessionstore.Session, error) {
	sess, err := s.svc.Load(ctx, rq.account, id)
	if err != nil {
		return sess, httpError(err)
	}
	if !sess.Completed {
		rq.expires = sess.ExpiresAt
	}
	return sess, nil
}

// headSession is the session an offset retrieval reports
// (upload.Service.Offset): the offset answered is one the next append is
// accepted at.
func (s *Server) headSession(ctx context.Context, rq *request, id string) (sessionstore.Session, error) {
	sess, err := s.svc.Offset(ctx, rq.account, id)
	if sess.ID != "" && !sess.Completed {
		rq.expires = sess.ExpiresAt
	}
	return sess, httpError(err)
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

// tusDelete serves DELETE (termination, upload.Service.Delete): frees
// the stored bytes and soft-deletes the asset. A session that is already
// gone, or another account's, is a 204 that changes nothing.
func (s *Server) tusDelete(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, id string) error {
	if err := s.svc.Delete(ctx, rq.account, id); err != nil {
		return err
	}
	rc.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}
