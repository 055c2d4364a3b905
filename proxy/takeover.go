package proxy

import (
	"errors"

	"github.com/roughy/ingest/upload"
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
	errTakenOver = codeUploadTakenOver.err()
	// errDeletedUnder: a DELETE terminated the upload while this request
	// wrote to it. Not retryable.
	errDeletedUnder = codeUploadDeleted.err()
)

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
