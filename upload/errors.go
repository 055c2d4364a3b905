package upload

import "errors"

// Errors of a write that let go of its upload. The front doors render
// them (TUS JSON, the draft's problem+json).
var (
	// ErrTakenOver: a newer request, or an offset retrieval, took the
	// upload over; the write stopped and committed what was durable. The
	// client resumes from a HEAD.
	ErrTakenOver = errors.New("upload: a newer request took the upload over")
	// ErrDeleted: a DELETE terminated the upload while the request wrote
	// to it. Not retryable.
	ErrDeleted = errors.New("upload: the upload was deleted while the request wrote to it")
)
