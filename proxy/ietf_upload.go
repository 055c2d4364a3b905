package proxy

import (
	"context"
	"fmt"
	"strings"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// ietfHead serves offset retrieval (HEAD, or GET with no body): 204 with
// Upload-Offset, the completeness, Upload-Length when known, Upload-Limit
// and Cache-Control: no-store. Like TUS's HEAD it first takes the upload
// over from a write in flight, so that the next append is accepted at the
// offset it answers, and completes an upload whose bytes are all stored
// (headSession).
func (s *Server) ietfHead(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, d *draftReq, id string) error {
	sess, err := s.headSession(ctx, rq, id)
	if err != nil {
		return err
	}
	h := &rc.Response.Header
	h.Set("Cache-Control", "no-store")
	h.Set("Upload-Offset", fmt.Sprint(sess.Offset))
	d.v.setDone(h, sess.Completed)
	if sess.Length >= 0 {
		h.Set("Upload-Length", fmt.Sprint(sess.Length))
	}
	h.Set("Upload-Limit", s.uploadLimit(sess.ExpiresAt))
	rc.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

// draftAppend is an append request's headers, parsed and checked.
type draftAppend struct {
	offset int64
	done   bool
	length int64 // -1: not told
	size   int64 // Content-Length, -1 when chunked
	dig    draftDigests
}

// parseDraftAppend reads a PATCH's headers. From interop 6 on, the
// content must be application/partial-upload; before 5, a missing
// Upload-Incomplete means the content ends the upload.
func parseDraftAppend(v draft, h *fasthttp.RequestHeader) (draftAppend, error) {
	a := draftAppend{length: -1}
	if v >= 6 {
		mt, _, _ := strings.Cut(string(h.ContentType()), ";")
		if !strings.EqualFold(strings.TrimSpace(mt), partialUploadType) {
			return a, errPartialType
		}
	}
	ov, ok, err := single(h, "Upload-Offset", codeInvalidOffset)
	if err != nil {
		return a, err
	}
	if a.offset, err = parseInt(strings.TrimSpace(ov)); !ok || err != nil {
		return a, codeInvalidOffset.with("Upload-Offset (a non-negative integer) is required")
	}
	done, said, err := v.ends(h)
	switch {
	case err != nil:
		return a, err
	case !said && v >= 5:
		return a, v.errNoComplete()
	case !said:
		done = true
	}
	a.done = done
	if a.length, err = draftLength(h); err != nil {
		return a, err
	}
	a.size = int64(h.ContentLength())
	if a.size == -2 {
		a.size = 0
	}
	if a.dig, err = parseDigests(h); err != nil {
		return a, err
	}
	if a.dig.content != nil && a.size > pipeline.MaxChunk {
		return a, errDigestTooLong
	}
	return a, agreeLength(&a.length, a.done, a.offset, a.size)
}

// checkDraftAppend is everything an append can be refused for before its
// content is read. It has no side effects (the Expect handler runs it).
func (s *Server) checkDraftAppend(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, d *draftReq, id string) (sessionstore.Session, draftAppend, error) {
	a, err := parseDraftAppend(d.v, &rc.Request.Header)
	if err != nil {
		return sessionstore.Session{}, a, err
	}
	d.provided = a.offset
	sess, err := s.loadSession(ctx, rq, id)
	if err != nil {
		return sess, a, err
	}
	requestFence(rc, sess)
	d.expected, d.completed, d.expires = sess.Offset, sess.Completed, sess.ExpiresAt
	switch {
	case len(sess.ConcatOf) > 0:
		return sess, a, codeFinalUpload.with("a final concatenation cannot be appended to")
	case a.offset != sess.Offset:
		return sess, a, errOffset(sess.Offset, a.offset)
	case a.length >= 0 && sess.Length >= 0 && a.length != sess.Length:
		return sess, a, errInconsistentLength
	case sess.Completed && a.size != 0 && d.v <= 6:
		return sess, a, errDraftCompleted
	case sess.Completed && a.size != 0:
		return sess, a, errPastLength
	}
	return sess, a, nil
}

// ietfPatch serves an append: the content is written at Upload-Offset
// (upload.Service.AppendStream, in segments), then answered 204 with Upload-Complete: ?0
// (201 up to interop 6, with Upload-Incomplete: ?1 at 3), or, when the upload is
// complete, as the asset. A valid append to a completed upload replays
// that answer (the client lost it).
func (s *Server) ietfPatch(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, d *draftReq, id string) error {
	sess, a, err := s.checkDraftAppend(ctx, rc, rq, d, id)
	if err != nil {
		return err
	}
	if !sess.Completed {
		if a.done && a.size == 0 && a.dig.repr != nil {
			// An empty request that ends the upload: check before the
			// length is set, which makes a stored upload whole.
			if err := s.checkRepr(ctx, sess, a.dig.repr, false); err != nil {
				return err
			}
		}
		if a.length >= 0 && sess.Length < 0 {
			if err := s.applyLength(ctx, &sess, chunkRequest{length: a.length, size: a.size}); err != nil {
				return err
			}
		}
		if sess, err = s.ietfAppend(ctx, rc, rq, d, sess, a.size, a.done, a.dig); err != nil {
			return err
		}
	}
	if sess.Completed {
		return s.ietfAsset(ctx, rc, d, sess)
	}
	s.ietfPending(rc, d, sess)
	if d.v <= 6 {
		// Drafts -01 to -05; 204 from -06 on.
		rc.SetStatusCode(fasthttp.StatusCreated)
	} else {
		rc.SetStatusCode(fasthttp.StatusNoContent)
	}
	return nil
}
