package proxy

import (
	"context"
	"strconv"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/upload"
	"github.com/valyala/fasthttp"
)

// chunkRequest is one PATCH (or the data of a POST) as its headers say.
type chunkRequest struct {
	offset int64 // Upload-Offset
	size   int64 // Content-Length, -1 when chunked
	sum    *pipeline.Checksum
	length int64 // Upload-Length sent with a PATCH of a deferred upload, else -1
	// heads is the upload's head fence as the request first read it
	// (requestFence; 0 for an upload the request created): every lease
	// the write takes is refused once an offset retrieval read the
	// upload since.
	heads int64
}

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

// parsePatch reads a PATCH's headers into a chunk request.
func parsePatch(h *fasthttp.RequestHeader) (chunkRequest, error) {
	if !isOffsetType(h.ContentType()) {
		return chunkRequest{}, errContentType
	}
	ov, ok, err := single(h, "Upload-Offset", codeInvalidOffset)
	if err != nil {
		return chunkRequest{}, err
	}
	if !ok {
		return chunkRequest{}, codeInvalidOffset.with("Upload-Offset is required")
	}
	offset, err := parseInt(ov)
	if err != nil {
		return chunkRequest{}, codeInvalidOffset.err()
	}
	size := int64(h.ContentLength())
	if size == -2 {
		size = 0
	}
	if size > pipeline.MaxChunk {
		return chunkRequest{}, errChunkTooBig
	}
	cr := chunkRequest{offset: offset, size: size, length: -1}
	if cr.sum, err = parseChecksumHeader(h); err != nil {
		return chunkRequest{}, err
	}
	lv, ok, err := single(h, "Upload-Length", codeInvalidLength)
	if err != nil {
		return chunkRequest{}, err
	}
	if ok {
		if cr.length, err = parseInt(lv); err != nil {
			return chunkRequest{}, codeInvalidLength.err()
		}
		if cr.length > pipeline.MaxUploadLength {
			return chunkRequest{}, errUploadTooLarge
		}
	}
	return cr, nil
}

// tusPatch serves PATCH: one chunk appended at Upload-Offset.
func (s *Server) tusPatch(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, id string) error {
	sess, cr, err := s.checkPatch(ctx, rc, rq, id)
	if err != nil {
		return err
	}
	if !sess.Completed {
		cr.heads = requestFence(rc, sess)
		if sess, err = s.writeChunk(ctx, rc, rq, sess, cr); err != nil {
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
// read: its headers, the upload's owner and state, offset and length. It
// has no side effects, so the Expect handler runs it before 100 Continue
// (the handler runs it again: the upload may have moved in between).
func (s *Server) checkPatch(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, id string) (sessionstore.Session, chunkRequest, error) {
	cr, err := parsePatch(&rc.Request.Header)
	if err != nil {
		return sessionstore.Session{}, cr, err
	}
	sess, err := s.loadSession(ctx, rq, id)
	if err == nil {
		requestFence(rc, sess)
	}
	switch {
	case err != nil:
		return sess, cr, err
	case len(sess.ConcatOf) > 0:
		return sess, cr, codeFinalUpload.err()
	case !sess.Completed:
		return sess, cr, checkChunk(sess, cr)
	case cr.offset != sess.Offset:
		return sess, cr, errOffset(sess.Offset, cr.offset)
	case cr.size != 0:
		return sess, cr, errPastLength
	}
	return sess, cr, nil
}

// checkChunk refuses a chunk that cannot be written at sess as it stands.
func checkChunk(sess sessionstore.Session, cr chunkRequest) error {
	if sess.Offset != cr.offset {
		return errOffset(sess.Offset, cr.offset)
	}
	length, err := lengthWith(sess, cr)
	if err != nil {
		return err
	}
	if length >= 0 && cr.size > length-sess.Offset {
		return errPastLength
	}
	return nil
}

// lengthWith is the upload's length once a PATCH's Upload-Length is
// applied (-1: still deferred), or why that length cannot be.
func lengthWith(sess sessionstore.Session, cr chunkRequest) (int64, error) {
	n, err := upload.LengthWith(sess, cr.length, cr.size)
	return n, httpError(err)
}

// applyLength sets a deferred upload's length from a request's
// Upload-Length (upload.Service.ApplyLength: it reserves the quota
// first).
func (s *Server) applyLength(ctx context.Context, sess *sessionstore.Session, cr chunkRequest) error {
	return httpError(s.svc.ApplyLength(ctx, sess, cr.length, cr.size))
}

// writeChunk is a request's append: its body goes to the upload service
// (upload.Service.Append), which streams it into the upload under its
// lease and completes the upload with its last byte. It returns the
// session as last committed, also with an error.
func (s *Server) writeChunk(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, sess sessionstore.Session, cr chunkRequest) (sessionstore.Session, error) {
	body := s.newBodyReader(rc, rq)
	defer s.trackBody(body)()
	sess, err := s.svc.Append(ctx, sess, upload.AppendRequest{
		Offset: cr.offset, Size: cr.size, Checksum: cr.sum, Length: cr.length,
		Body: appendBody{body}, Heads: cr.heads, Began: rc.Time(),
	})
	return sess, httpError(err)
}

// finishIfFull completes an upload whose bytes are all stored but that
// was not marked complete (upload.Service.Finish).
func (s *Server) finishIfFull(ctx context.Context, sess sessionstore.Session) (sessionstore.Session, error) {
	sess, err := s.svc.Finish(ctx, sess)
	return sess, httpError(err)
}
