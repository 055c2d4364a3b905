package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
// message safe to show to clients. Handlers return it; writeError renders it.
type Error struct {
	Status  int
	Code    string
	Message string
}

// Error implements error.
func (e *Error) Error() string { return "proxy: " + e.Code + ": " + e.Message }

func errorf(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

// Errors shared by several handlers.
var (
	errNotFound     = errorf(fasthttp.StatusNotFound, "not_found", "no such upload or asset")
	errUnauthorized = errorf(fasthttp.StatusUnauthorized, "unauthorized", "missing or unknown API key; send Authorization: Bearer <key>")
	errTusVersion   = errorf(fasthttp.StatusPreconditionFailed, "unsupported_tus_version", "Tus-Resumable 1.0.0 is required")
	errExpired      = errorf(fasthttp.StatusGone, "upload_expired", "the upload expired; start a new one")
	errLocked       = errorf(fasthttp.StatusLocked, "upload_locked", "another request is writing this upload; retry shortly")
	errUnavailable  = errorf(fasthttp.StatusServiceUnavailable, "backend_unavailable", "storage or session backend unavailable; retry later")
	errChunkTooBig  = errorf(fasthttp.StatusRequestEntityTooLarge, "chunk_too_large",
		"request body is larger than 64 MiB (67108864 bytes); set tus-js-client's chunkSize (e.g. 50 MiB) or your client's chunk size below it")
	errPastLength = errorf(fasthttp.StatusRequestEntityTooLarge, "past_upload_length", "the body goes past Upload-Length")
	errMethod     = errorf(fasthttp.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this resource")
	// errStorageFull is a full disk (or quota): unlike an outage it does
	// not pass by itself, so it is not a 503 "retry later".
	errStorageFull = errorf(fasthttp.StatusInsufficientStorage, "storage_full",
		"the server's storage is full; nothing more of the upload was stored. HEAD it and resume later or on another server")
	errSlow = errorf(fasthttp.StatusRequestTimeout, "body_too_slow",
		"the body arrived slower than the server's minimum rate; HEAD the upload and resume")
	// errTooManyBodies is a transient limit of this node: 503, which every
	// TUS client retries (tus-js-client gives an upload up on any other
	// 4xx than 409 and 423, so a 429 here failed browser uploads).
	errTooManyBodies = errorf(fasthttp.StatusServiceUnavailable, "too_many_uploads",
		"this account has too many uploads streaming to this server; retry after Retry-After seconds")
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
		return errorf(fasthttp.StatusConflict, "offset_conflict", "the upload's offset moved; HEAD it and resume"), true
	case errors.Is(err, pipeline.ErrChecksumMismatch):
		return errorf(StatusChecksumMismatch, "checksum_mismatch", "Upload-Checksum does not match the body; the chunk was discarded"), true
	case errors.Is(err, pipeline.ErrTooLarge):
		return errPastLength, true
	case errors.Is(err, errSlowBody):
		return errSlow, true
	case errors.Is(err, pipeline.ErrTruncated), errors.Is(err, errBodyRead):
		return errorf(fasthttp.StatusBadRequest, "body_incomplete", "the body ended early; HEAD the upload and resume"), true
	case errors.Is(err, sessionstore.ErrPartsExhausted):
		return errorf(fasthttp.StatusRequestEntityTooLarge, "parts_exhausted", "the upload used up its storage parts; resume with larger chunks"), true
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// Shutdown gave up waiting, or a backend call timed out: retry.
		return errUnavailable, true
	}
	return errorf(fasthttp.StatusInternalServerError, "internal_error", "internal error"), false
}

type errorBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id,omitempty"`
	} `json:"error"`
}

// writeError renders err as {"error":{"code","message"}} with its status.
// Unknown errors and 5xx are logged with the request's attributes; the
// client sees only the request id.
func (s *Server) writeError(ctx *fasthttp.RequestCtx, rq *request, err error) {
	e, known := classify(err)
	var body errorBody
	body.Error.Code, body.Error.Message = e.Code, e.Message
	switch {
	case !known:
		body.Error.RequestID = rq.id
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
	writeJSON(ctx, e.Status, &body)
}

// maxHeaderBytes is the server's ReadBufferSize, which also caps the
// request line and headers together.
const maxHeaderBytes = 64 << 10

// Errors of requests that fasthttp could not parse.
var (
	errHeadersTooLarge = errorf(fasthttp.StatusRequestHeaderFieldsTooLarge, "headers_too_large",
		fmt.Sprintf("the request line and headers exceed %d KiB (%d bytes)", maxHeaderBytes>>10, maxHeaderBytes))
	errMalformed = errorf(fasthttp.StatusBadRequest, "malformed_request", "the request is not valid HTTP/1.1")
	errTimeout   = errorf(fasthttp.StatusRequestTimeout, "request_timeout", "the request was not received in time")
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
