package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// StatusChecksumMismatch is TUS's 460 Checksum Mismatch.
const StatusChecksumMismatch = 460

// retryAfterSeconds is the Retry-After of every 503 and 429.
const retryAfterSeconds = "5"

// lockedRetryAfter is the Retry-After of a 423: a writer that still holds
// the upload finishes or is taken over within about a second.
const lockedRetryAfter = "1"

// checksumMismatchText is 460's reason phrase (fasthttp knows no text for
// 460 and would send "Unknown Status Code").
var checksumMismatchText = []byte("Checksum Mismatch")

// Error is a protocol error: an HTTP status, a stable snake_case code and a
// message safe to show to clients. Handlers return it; writeError renders
// it. Errors are made from the catalogue (catalogue.go) only.
type Error struct {
	Status  int
	Code    string
	Message string
	code    catalogueCode
}

// Error implements error.
func (e *Error) Error() string { return "proxy: " + e.Code + ": " + e.Message }

// Errors shared by several handlers.
var (
	errNotFound       = codeNotFound.err()
	errNoEndpoint     = codeNotFound.with("no such endpoint")
	errUnauthorized   = codeUnauthorized.err()
	errTusVersion     = codeUnsupportedTusVersion.err()
	errExpired        = codeUploadExpired.err()
	errLocked         = codeUploadLocked.err()
	errUnavailable    = codeBackendUnavailable.err()
	errChunkTooBig    = codeChunkTooLarge.err()
	errPastLength     = codePastUploadLength.err()
	errMethod         = codeMethodNotAllowed.err()
	errOffsetMoved    = codeOffsetConflict.err()
	errChecksum       = codeChecksumMismatch.err()
	errBodyIncomplete = codeBodyIncomplete.err()
	errPartsUsedUp    = codePartsExhausted.err()
	errInternal       = codeInternalError.err()
	// errStorageFull is a full disk (or quota): unlike an outage it does
	// not pass by itself, so it is not a 503 "retry later".
	errStorageFull = codeStorageFull.err()
	errSlow        = codeBodyTooSlow.err()
	// errTooManyBodies is a transient limit of this node: 503, which every
	// TUS client retries (tus-js-client gives an upload up on any other
	// 4xx than 409 and 423, so a 429 here failed browser uploads).
	errTooManyBodies = codeTooManyUploads.err()
)

// classify turns any error into the protocol error to send. Backend outages
// become 503; errors it does not know become 500 (ok false: the caller logs
// the details under the request id).
func classify(err error) (e *Error, known bool) {
	if pe, ok := errors.AsType[*Error](err); ok {
		return pe, true
	}
	switch {
	case errors.Is(err, pipeline.ErrStorageFull), errors.Is(err, sessionstore.ErrStorageFull):
		return errStorageFull, true
	case errors.Is(err, sessionstore.ErrUnavailable), errors.Is(err, pipeline.ErrStorage):
		return errUnavailable, true
	case errors.Is(err, sessionstore.ErrLocked), errors.Is(err, sessionstore.ErrLeaseLost), errors.Is(err, pipeline.ErrBusy):
		return errLocked, true
	case errors.Is(err, sessionstore.ErrNotFound), errors.Is(err, pipeline.ErrNoSuchUpload):
		return errNotFound, true
	case errors.Is(err, sessionstore.ErrOffsetConflict):
		return errOffsetMoved, true
	case errors.Is(err, pipeline.ErrChecksumMismatch):
		return errChecksum, true
	case errors.Is(err, pipeline.ErrTooLarge):
		return errPastLength, true
	case errors.Is(err, errSlowBody):
		return errSlow, true
	case errors.Is(err, pipeline.ErrTruncated), errors.Is(err, errBodyRead):
		return errBodyIncomplete, true
	case errors.Is(err, sessionstore.ErrPartsExhausted):
		return errPartsUsedUp, true
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// Shutdown gave up waiting, or a backend call timed out: retry.
		return errUnavailable, true
	}
	return errInternal, false
}

type errorBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id,omitempty"`
	} `json:"error"`
}

// writeError answers err as TUS's JSON error {"error":{"code","message"}}
// with its status (the draft's problem+json is ietfFail's). Unknown
// errors get the request id in the body instead of their details.
func (s *Server) writeError(ctx *fasthttp.RequestCtx, rq *request, err error) {
	e, known := s.reportError(ctx, rq, err)
	var body errorBody
	body.Error.Code, body.Error.Message = e.Code, e.Message
	if !known {
		body.Error.RequestID = rq.id
	}
	writeJSON(ctx, e.Status, &body)
}

// reportError is what every error answer does whatever its body: it
// classifies err, logs it (unknown errors and 5xx with the request's
// attributes; the client sees only the request id), counts it and sets
// the headers its status takes. The caller writes the body.
func (s *Server) reportError(ctx *fasthttp.RequestCtx, rq *request, err error) (e *Error, known bool) {
	e, known = classify(err)
	switch {
	case !known:
		s.log.Error("request failed", append(rq.attrs(), slog.Any("err", err))...)
	case e.Status >= 500 && e != errClientFull && e != errTooManyBodies: // a flood of refusals must not flood the log
		s.log.Warn("request failed", append(rq.attrs(), slog.Int("status", e.Status), slog.Any("err", err))...)
	default:
		s.log.Debug("request rejected", append(rq.attrs(), slog.Int("status", e.Status), slog.Any("err", err))...)
	}
	switch e.Status {
	case fasthttp.StatusServiceUnavailable, fasthttp.StatusTooManyRequests:
		ctx.Response.Header.Set("Retry-After", retryAfterSeconds)
	case fasthttp.StatusLocked:
		ctx.Response.Header.Set("Retry-After", lockedRetryAfter)
	case StatusChecksumMismatch:
		ctx.Response.Header.SetStatusMessage(checksumMismatchText)
	case fasthttp.StatusUnauthorized:
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="roughy"`)
	case fasthttp.StatusPreconditionFailed:
		if e == errTusVersion { // not a download's failed If-Match
			ctx.Response.Header.Set("Tus-Version", tusVersion)
		}
	case fasthttp.StatusMethodNotAllowed:
		if rq.allow != "" {
			ctx.Response.Header.Set("Allow", rq.allow)
		}
	}
	ctx.Response.Header.Del("Upload-Offset")
	s.metrics.errors.WithLabelValues(statusLabel(e.Status), e.Code).Inc()
	return e, known
}

// maxHeaderBytes is the server's ReadBufferSize, which also caps the
// request line and headers together.
const maxHeaderBytes = 64 << 10

// Errors of requests that fasthttp could not parse.
var (
	errHeadersTooLarge = codeHeadersTooLarge.err()
	errMalformed       = codeMalformedRequest.err()
	errTimeout         = codeRequestTimeout.err()
)

// parseError is fasthttp's ErrorHandler: a request it could not read gets
// the same JSON error and Tus-Resumable as any other. err is not logged
// here (fasthttp hands it to fasthttpLogger, which withholds the request
// bytes it quotes) and never reaches the body.
func (s *Server) parseError(ctx *fasthttp.RequestCtx, err error) {
	e := errMalformed
	if _, ok := errors.AsType[*fasthttp.ErrSmallBuffer](err); ok {
		e = errHeadersTooLarge
	} else if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		e = errTimeout
	}
	var body errorBody
	body.Error.Code, body.Error.Message = e.Code, e.Message
	ctx.Response.Reset()
	ctx.Response.Header.Set("Tus-Resumable", tusVersion)
	writeJSON(ctx, e.Status, &body)
}

// writeJSON sends v as the JSON body with status.
func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own plain structs are marshaled here.
		panic(err)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	if ctx.IsHead() {
		ctx.Response.Header.SetContentLength(len(b))
		return
	}
	ctx.SetBody(b)
}
