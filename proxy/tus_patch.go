package proxy

import (
	"context"
	"strconv"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// headFenceKey is the request's user value that keeps the head fence it
// first read (requestFence).
const headFenceKey = "roughy.headFence"

// requestFence is the upload's head fence as the request first read it:
// at the Expect handler's check when that ran (before 100 Continue: the
// client may have sent its HEAD since), else as sess, the handler's read,
// has it.
func requestFence(rc *fasthttp.RequestCtx, sess sessionstore.Session) int64 {
	if v, ok := rc.UserValue(headFenceKey).(int64); ok {
		return v
	}
	rc.SetUserValue(headFenceKey, sess.HeadFence)
	return sess.HeadFence
}

func errOffset(want, got int64) *Error {
	return codeOffsetMismatch.withf("Upload-Offset %d does not match the upload's offset %d", got, want)
}

// parsePatch reads a PATCH's headers into an append.
func parsePatch(h *fasthttp.RequestHeader) (appendIntent, error) {
	if !isOffsetType(h.ContentType()) {
		return appendIntent{}, errContentType
	}
	ov, ok, err := single(h, "Upload-Offset", codeInvalidOffset)
	if err != nil {
		return appendIntent{}, err
	}
	if !ok {
		return appendIntent{}, codeInvalidOffset.with("Upload-Offset is required")
	}
	offset, err := parseInt(ov)
	if err != nil {
		return appendIntent{}, codeInvalidOffset.err()
	}
	in := appendIntent{offset: offset, size: contentSize(h), length: -1}
	if in.size > pipeline.MaxChunk {
		return appendIntent{}, errChunkTooBig
	}
	if in.sum, err = parseChecksumHeader(h); err != nil {
		return appendIntent{}, err
	}
	lv, ok, err := single(h, "Upload-Length", codeInvalidLength)
	if err != nil {
		return appendIntent{}, err
	}
	if ok {
		if in.length, err = parseUploadLength(lv); err != nil {
			return appendIntent{}, err
		}
	}
	return in, nil
}

// patch serves PATCH: one chunk appended at Upload-Offset.
func (t tusProtocol) patch(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, id string) error {
	in, sess, err := t.checkPatch(ctx, rc, rq, id)
	if err != nil {
		return err
	}
	if !sess.Completed {
		if sess, err = t.write(ctx, rc, rq, sess, in); err != nil {
			return err
		}
	}
	rc.Response.Header.Set("Upload-Offset", strconv.FormatInt(sess.Offset, 10))
	if !sess.Completed {
		rc.Response.Header.Set("Upload-Expires", sess.ExpiresAt.UTC().Format(httpTime))
	}
	rc.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

// checkPatch is everything a PATCH can be refused for before its body is
// read: its headers, then the shared check (uploads.checkAppend) under
// TUS's rules. The Expect handler runs it before 100 Continue.
func (t tusProtocol) checkPatch(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, id string) (appendIntent, sessionstore.Session, error) {
	in, err := parsePatch(&rc.Request.Header)
	if err != nil {
		return in, sessionstore.Session{}, err
	}
	sess, err := t.checkAppend(ctx, rc, rq, id, in, tusAppend)
	return in, sess, err
}
