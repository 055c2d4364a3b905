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
// (uploads.offset).
func (t draftProtocol) head(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, d *draftReq, id string) error {
	sess, err := t.offset(ctx, rq, id)
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
	h.Set("Upload-Limit", uploadLimit(t.expiry, sess.ExpiresAt))
	rc.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

// parseDraftAppend reads a PATCH's headers into an append. From interop
// 6 on, the content must be application/partial-upload; before 5, a
// missing Upload-Incomplete means the content ends the upload.
func parseDraftAppend(v draft, h *fasthttp.RequestHeader) (appendIntent, error) {
	a := appendIntent{length: -1, stream: true}
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
	a.size = contentSize(h)
	dig, err := parseDigests(h)
	if err != nil {
		return a, err
	}
	a.sum, a.repr = dig.content, dig.repr
	if a.sum != nil && a.size > pipeline.MaxChunk {
		return a, errDigestTooLong
	}
	return a, agreeLength(&a.length, a.done, a.offset, a.size)
}

// checkPatch is everything an append can be refused for before its
// content is read: its headers, then the shared check
// (uploads.checkAppend) under the version's rules. It has no side effects
// beyond d (the Expect handler runs it).
func (t draftProtocol) checkPatch(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, d *draftReq, id string) (appendIntent, sessionstore.Session, error) {
	a, err := parseDraftAppend(d.v, &rc.Request.Header)
	if err != nil {
		return a, sessionstore.Session{}, err
	}
	d.provided = a.offset
	sess, err := t.checkAppend(ctx, rc, rq, id, a, d.v.appendRules())
	if sess.ID != "" {
		d.expected, d.completed, d.expires = sess.Offset, sess.Completed, sess.ExpiresAt
	}
	return a, sess, err
}

// patch serves an append: the content is written at Upload-Offset (in
// segments), then answered 204 with Upload-Complete: ?0 (201 up to
// interop 6, with Upload-Incomplete: ?1 at 3), or, when the upload is
// complete, as the asset. A valid append to a completed upload replays
// that answer (the client lost it).
func (t draftProtocol) patch(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, d *draftReq, id string) error {
	a, sess, err := t.checkPatch(ctx, rc, rq, d, id)
	if err != nil {
		return err
	}
	if !sess.Completed {
		if sess, err = t.prepare(ctx, sess, a); err != nil {
			return err
		}
		if sess, err = t.write(ctx, rc, rq, d, sess, a); err != nil {
			return err
		}
	}
	if sess.Completed {
		return t.asset(ctx, rc, d, sess)
	}
	t.pending(rc, d, sess)
	if d.v <= 6 {
		// Drafts -01 to -05; 204 from -06 on.
		rc.SetStatusCode(fasthttp.StatusCreated)
	} else {
		rc.SetStatusCode(fasthttp.StatusNoContent)
	}
	return nil
}

// prepare does what must precede an append's content: an empty request
// that ends the upload has its Repr-Digest checked
// (upload.Service.CheckRepr) before the length is set, which makes a
// stored upload whole; a length the request gives is set on a deferred
// upload (upload.Service.ApplyLength: it reserves the quota first).
func (t draftProtocol) prepare(ctx context.Context, sess sessionstore.Session, a appendIntent) (sessionstore.Session, error) {
	if a.done && a.size == 0 && a.repr != nil {
		if err := t.svc.CheckRepr(ctx, sess, a.repr, false); err != nil {
			return sess, httpError(err)
		}
	}
	if a.length >= 0 && sess.Length < 0 {
		if err := t.svc.ApplyLength(ctx, &sess, a.length, a.size); err != nil {
			return sess, httpError(err)
		}
	}
	return sess, nil
}
