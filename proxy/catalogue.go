package proxy

import (
	"fmt"

	"github.com/valyala/fasthttp"
)

// catalogueCode is a code of the error catalogue. Every error this server
// answers is made from one (catalogueCode.err, with, withf): its code string
// and status come only from the catalogue, which docs/errors.md is
// generated from (go test ./proxy -run ErrorCatalogue -update).
type catalogueCode int

// The catalogue's codes, grouped by status (docs/errors.md sorts them by
// status, then code).
const (
	codeBodyIncomplete catalogueCode = iota
	codeConcatenationNotAllowed
	codeDigestMismatch
	codeFinalUpload
	codeInconsistentLength
	codeInvalidChecksum
	codeInvalidConcat
	codeInvalidDigest
	codeInvalidDirectUpload
	codeInvalidLength
	codeInvalidMetadata
	codeInvalidOffset
	codeInvalidUploadComplete
	codeInvalidUploadLength
	codeInvalidWebhook
	codeLengthRequired
	codeMalformedRequest
	codeMissingUploadComplete
	codeReprDigestMismatch
	codeUploadComplete
	codeUnauthorized
	codeDirectUploadRevoked
	codeDirectUploadUsed
	codeInvalidToken
	codeInvalidUploadToken
	codeOriginNotAllowed
	codeQuotaExceeded
	codeTypeNotAllowed
	codeNotFound
	codeUploadDeleted
	codeMethodNotAllowed
	codeBodyTooSlow
	codeRequestTimeout
	codeOffsetConflict
	codeOffsetMismatch
	codeTooManyWebhooks
	codeUploadTakenOver
	codeDirectUploadExpired
	codeUploadExpired
	codePreconditionFailed
	codeUnsupportedTusVersion
	codeBodyTooLarge
	codeChunkTooLarge
	codePartsExhausted
	codePastUploadLength
	codeUploadTooLarge
	codeUnsupportedContentType
	codeRangeNotSatisfiable
	codeUploadLocked
	codeHeadersTooLarge
	codeChecksumMismatch
	codeInternalError
	codeBackendUnavailable
	codeStorageLow
	codeStoreDataLost
	codeTooManyConnections
	codeTooManyConnectionsFromClient
	codeTooManyUploads
	codeStorageFull
	numCodes
)

// errorEntry is one code of the catalogue. Code and Status are what both
// renderers send: the TUS JSON body {"error":{"code","message"}} and the
// draft's problem+json (status, code and the message as detail). Title
// says what the code means, for docs/errors.md; Message is the message of
// the code's errors that bring none of their own. A problem's title is
// the status's phrase (RFC 9457 for type about:blank) unless the entry
// names a registered problem type, whose title it then also names.
type errorEntry struct {
	Code    string
	Status  int
	Title   string
	Message string
	// ProblemType and ProblemTitle are the draft's registered problem
	// type of the code, when it has one.
	ProblemType, ProblemTitle string
}

// catalogue is every error code this server sends.
var catalogue = [numCodes]errorEntry{
	codeBodyIncomplete: {Code: "body_incomplete", Status: fasthttp.StatusBadRequest, Title: "The body ended before its Content-Length",
		Message: "the body ended early; HEAD the upload and resume"},
	codeConcatenationNotAllowed: {Code: "concatenation_not_allowed", Status: fasthttp.StatusForbidden, Title: "Concatenation on a direct upload URL",
		Message: "a direct upload URL creates one upload: Upload-Concat (tus-js-client's parallelUploads) is not available"},
	codeDigestMismatch: {Code: "digest_mismatch", Status: fasthttp.StatusBadRequest, Title: "Content-Digest does not match the content",
		Message: "Content-Digest does not match the content; nothing of it was stored, the offset is unchanged"},
	codeFinalUpload: {Code: "final_upload", Status: fasthttp.StatusForbidden, Title: "A final concatenation takes no content",
		Message: "a final concatenation cannot be patched"},
	codeInconsistentLength: {Code: "inconsistent_length", Status: fasthttp.StatusBadRequest, Title: "The request's lengths disagree",
		Message:     "Upload-Length, Upload-Complete with Content-Length, and the upload's length must agree",
		ProblemType: problemLength, ProblemTitle: "inconsistent length values for upload"},
	codeInvalidChecksum: {Code: "invalid_checksum", Status: fasthttp.StatusBadRequest, Title: "Upload-Checksum is not valid",
		Message: "Upload-Checksum <value>: want \"<algorithm> <base64>\" (or why the algorithm or digest is refused)"},
	codeInvalidConcat: {Code: "invalid_concat", Status: fasthttp.StatusBadRequest, Title: "Upload-Concat is not valid",
		Message: "Upload-Concat <value>: want \"partial\" or \"final;<urls>\" (or why a listed upload cannot be concatenated)"},
	codeInvalidDigest: {Code: "invalid_digest", Status: fasthttp.StatusBadRequest, Title: "Content-Digest or Repr-Digest is not valid",
		Message: "<field>: <why the digest field is not valid>"},
	codeInvalidDirectUpload: {Code: "invalid_direct_upload", Status: fasthttp.StatusBadRequest, Title: "The direct upload request's JSON is not valid",
		Message: "<the field that is not valid and what it takes>"},
	codeInvalidLength: {Code: "invalid_length", Status: fasthttp.StatusBadRequest, Title: "Upload-Length or Upload-Defer-Length is not valid",
		Message: "Upload-Length must be a non-negative integer"},
	codeInvalidMetadata: {Code: "invalid_metadata", Status: fasthttp.StatusBadRequest, Title: "Upload-Metadata is not valid",
		Message: `Upload-Metadata needs "type" ("video" or "audio")`},
	codeInvalidOffset: {Code: "invalid_offset", Status: fasthttp.StatusBadRequest, Title: "Upload-Offset is missing or not valid",
		Message: "Upload-Offset must be a non-negative integer"},
	codeInvalidUploadComplete: {Code: "invalid_upload_complete", Status: fasthttp.StatusBadRequest, Title: "Upload-Complete is sent twice with different values",
		Message: "Upload-Complete is sent more than once with different values"},
	codeInvalidUploadLength: {Code: "invalid_upload_length", Status: fasthttp.StatusBadRequest, Title: "Upload-Length is below what is stored",
		Message: "Upload-Length <length> is below the upload's offset <offset>"},
	codeInvalidWebhook: {Code: "invalid_webhook", Status: fasthttp.StatusBadRequest, Title: "The webhook request's JSON is not valid",
		Message: `the body must be JSON {"url":"https://…","events":["asset.ready",…]}; events default to all of <event types>`},
	codeLengthRequired: {Code: "length_required", Status: fasthttp.StatusBadRequest, Title: "A size-limited direct upload needs Upload-Length",
		Message: "this direct upload has a size limit: send Upload-Length (Upload-Defer-Length is not available)"},
	codeMalformedRequest: {Code: "malformed_request", Status: fasthttp.StatusBadRequest, Title: "Not HTTP/1.1",
		Message: "the request is not valid HTTP/1.1"},
	codeMissingUploadComplete: {Code: "missing_upload_complete", Status: fasthttp.StatusBadRequest, Title: "The draft's completeness field is missing",
		Message: "Upload-Complete: ?0 or ?1 is required"},
	codeReprDigestMismatch: {Code: "repr_digest_mismatch", Status: fasthttp.StatusBadRequest, Title: "Repr-Digest does not match the upload",
		Message: "Repr-Digest does not match the uploaded representation; nothing of this request was stored, the offset is unchanged"},
	codeUploadComplete: {Code: "upload_complete", Status: fasthttp.StatusBadRequest, Title: "Content for a completed upload",
		Message: "the upload is complete: it takes no more content"},
	codeUnauthorized: {Code: "unauthorized", Status: fasthttp.StatusUnauthorized, Title: "No valid API key",
		Message: "missing or unknown API key; send Authorization: Bearer <key>"},
	codeDirectUploadRevoked: {Code: "direct_upload_revoked", Status: fasthttp.StatusForbidden, Title: "The direct upload URL was revoked",
		Message: "this direct upload URL was revoked by its creator; ask the site for a new upload URL"},
	codeDirectUploadUsed: {Code: "direct_upload_used", Status: fasthttp.StatusForbidden, Title: "The direct upload URL created its upload already",
		Message: "this direct upload URL already created its upload; resume that upload with HEAD and PATCH on the same URL"},
	codeInvalidToken: {Code: "invalid_token", Status: fasthttp.StatusForbidden, Title: "The download link is not valid",
		Message: "the download link is invalid or expired"},
	codeInvalidUploadToken: {Code: "invalid_upload_token", Status: fasthttp.StatusForbidden, Title: "The direct upload URL is not valid",
		Message: "this direct upload URL is not valid (unknown, or its token was altered); ask the site for a new upload URL"},
	codeOriginNotAllowed: {Code: "origin_not_allowed", Status: fasthttp.StatusForbidden, Title: "The page's origin may not use the direct upload URL",
		Message: "this direct upload URL does not accept requests from this page's origin"},
	codeQuotaExceeded: {Code: "quota_exceeded", Status: fasthttp.StatusForbidden, Title: "The account's quota is used up",
		Message: "the account's quota \"<limit>\" is <max> …; <what is used and what the request needs>"},
	codeTypeNotAllowed: {Code: "type_not_allowed", Status: fasthttp.StatusForbidden, Title: "Another type than the direct upload's",
		Message: `Upload-Metadata "type" differs from the type this direct upload was made for`},
	codeNotFound: {Code: "not_found", Status: fasthttp.StatusNotFound, Title: "No such upload, asset, webhook or endpoint",
		Message: "no such upload or asset"},
	codeUploadDeleted: {Code: "upload_deleted", Status: fasthttp.StatusNotFound, Title: "The upload was deleted under the request",
		Message: "the upload was deleted while this request wrote to it"},
	codeMethodNotAllowed: {Code: "method_not_allowed", Status: fasthttp.StatusMethodNotAllowed, Title: "The route does not take the method (see Allow)",
		Message: "method not allowed on this resource"},
	codeBodyTooSlow: {Code: "body_too_slow", Status: fasthttp.StatusRequestTimeout, Title: "The body arrived below the minimum rate",
		Message: "the body arrived slower than the server's minimum rate; HEAD the upload and resume"},
	codeRequestTimeout: {Code: "request_timeout", Status: fasthttp.StatusRequestTimeout, Title: "The request head was not received in time",
		Message: "the request was not received in time"},
	codeOffsetConflict: {Code: "offset_conflict", Status: fasthttp.StatusConflict, Title: "The upload's offset moved during the request",
		Message: "the upload's offset moved; HEAD it and resume"},
	codeOffsetMismatch: {Code: "offset_mismatch", Status: fasthttp.StatusConflict, Title: "Upload-Offset is not the upload's offset",
		Message:     "Upload-Offset <sent> does not match the upload's offset <offset>",
		ProblemType: problemMismatch, ProblemTitle: "offset from request does not match offset of resource"},
	codeTooManyWebhooks: {Code: "too_many_webhooks", Status: fasthttp.StatusConflict, Title: "The account has its most webhooks",
		Message: fmt.Sprintf("an account has at most %d webhooks; delete one first", maxWebhooksPerAccount)},
	codeUploadTakenOver: {Code: "upload_taken_over", Status: fasthttp.StatusConflict, Title: "A newer request took the upload over",
		Message: "a newer request on this upload took it over; HEAD the upload and resume"},
	codeDirectUploadExpired: {Code: "direct_upload_expired", Status: fasthttp.StatusGone, Title: "The direct upload URL expired unused",
		Message: "this direct upload URL expired before an upload was created with it; ask the site for a new upload URL"},
	codeUploadExpired: {Code: "upload_expired", Status: fasthttp.StatusGone, Title: "The upload expired",
		Message: "the upload expired; start a new one"},
	codePreconditionFailed: {Code: "precondition_failed", Status: fasthttp.StatusPreconditionFailed, Title: "A download's If-Match or If-Unmodified-Since failed",
		Message: "If-Match or If-Unmodified-Since does not hold for the asset"},
	codeUnsupportedTusVersion: {Code: "unsupported_tus_version", Status: fasthttp.StatusPreconditionFailed, Title: "Tus-Resumable is missing or not 1.0.0",
		Message: "Tus-Resumable 1.0.0 is required"},
	codeBodyTooLarge: {Code: "body_too_large", Status: fasthttp.StatusRequestEntityTooLarge, Title: "A JSON body is too large",
		Message: "the JSON body is larger than 64 KiB"},
	codeChunkTooLarge: {Code: "chunk_too_large", Status: fasthttp.StatusRequestEntityTooLarge, Title: "The request body is larger than a chunk may be",
		Message: "request body is larger than 64 MiB (67108864 bytes); set tus-js-client's chunkSize (e.g. 50 MiB) or your client's chunk size below it"},
	codePartsExhausted: {Code: "parts_exhausted", Status: fasthttp.StatusRequestEntityTooLarge, Title: "The upload used up its storage parts",
		Message: "the upload used up its storage parts; resume with larger chunks"},
	codePastUploadLength: {Code: "past_upload_length", Status: fasthttp.StatusRequestEntityTooLarge, Title: "The body goes past Upload-Length",
		Message: "the body goes past Upload-Length"},
	codeUploadTooLarge: {Code: "upload_too_large", Status: fasthttp.StatusRequestEntityTooLarge, Title: "Upload-Length is above the limit",
		Message: "Upload-Length is larger than Tus-Max-Size (53687091200 bytes)"},
	codeUnsupportedContentType: {Code: "unsupported_content_type", Status: fasthttp.StatusUnsupportedMediaType, Title: "The content is not of the append media type",
		Message: "PATCH bodies must be Content-Type: application/offset+octet-stream"},
	codeRangeNotSatisfiable: {Code: "range_not_satisfiable", Status: fasthttp.StatusRequestedRangeNotSatisfiable, Title: "The download's Range is outside the object",
		Message: "the requested range is outside the object"},
	codeUploadLocked: {Code: "upload_locked", Status: fasthttp.StatusLocked, Title: "Another request is writing the upload",
		Message: "another request is writing this upload; retry shortly"},
	codeHeadersTooLarge: {Code: "headers_too_large", Status: fasthttp.StatusRequestHeaderFieldsTooLarge, Title: "The request line and headers are too large",
		Message: fmt.Sprintf("the request line and headers exceed %d KiB (%d bytes)", maxHeaderBytes>>10, maxHeaderBytes)},
	codeChecksumMismatch: {Code: "checksum_mismatch", Status: StatusChecksumMismatch, Title: "Upload-Checksum does not match the body",
		Message: "Upload-Checksum does not match the body; the chunk was discarded"},
	codeInternalError: {Code: "internal_error", Status: fasthttp.StatusInternalServerError, Title: "An error the server did not expect (see its log under request_id)",
		Message: "internal error"},
	codeBackendUnavailable: {Code: "backend_unavailable", Status: fasthttp.StatusServiceUnavailable, Title: "The storage or the session store is unavailable",
		Message: "storage or session backend unavailable; retry later"},
	codeStorageLow: {Code: "storage_low", Status: fasthttp.StatusServiceUnavailable, Title: "The storage has less free space than --min-free-space",
		Message: "free space of the storage is below --min-free-space"},
	codeStoreDataLost: {Code: "store_data_lost", Status: fasthttp.StatusServiceUnavailable, Title: "The session store lost its data (readyz)",
		Message: "the session store lost its data since this node last checked: uploads and assets stored before are gone; " +
			"static API keys keep working and were stored again, other keys must be created again"},
	codeTooManyConnections: {Code: "too_many_connections", Status: fasthttp.StatusServiceUnavailable, Title: "The server is at --max-conns",
		Message: "the server is at its connection limit; retry shortly"},
	codeTooManyConnectionsFromClient: {Code: "too_many_connections_from_client", Status: fasthttp.StatusServiceUnavailable, Title: "The client is at --max-conns-per-ip",
		Message: "too many connections or requests from your address; close idle connections or retry shortly"},
	codeTooManyUploads: {Code: "too_many_uploads", Status: fasthttp.StatusServiceUnavailable, Title: "The account streams its most bodies to this node",
		Message: "this account has too many uploads streaming to this server; retry after Retry-After seconds"},
	codeStorageFull: {Code: "storage_full", Status: fasthttp.StatusInsufficientStorage, Title: "The storage is full",
		Message: "the server's storage is full; nothing more of the upload was stored. HEAD it and resume later or on another server"},
}

// err is the code's error with the catalogue's message.
func (c catalogueCode) err() *Error {
	return c.with(catalogue[c].Message)
}

// with is the code's error with a message of its own.
func (c catalogueCode) with(msg string) *Error {
	return &Error{Status: catalogue[c].Status, Code: catalogue[c].Code, Message: msg, code: c}
}

// withf is with of a formatted message.
func (c catalogueCode) withf(format string, args ...any) *Error {
	return c.with(fmt.Sprintf(format, args...))
}
