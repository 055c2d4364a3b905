package upload

import (
	"errors"
	"fmt"

	"github.com/roughy/ingest/sessionstore"
)

// Domain errors. The front doors render them (TUS JSON, the draft's
// problem+json) with the status and code each dialect gives them; the
// service never speaks HTTP.
var (
	// ErrTakenOver: a newer request, or an offset retrieval, took the
	// upload over; the write stopped and committed what was durable. The
	// client resumes from a HEAD.
	ErrTakenOver = errors.New("upload: a newer request took the upload over")
	// ErrDeleted: a DELETE terminated the upload while the request wrote
	// to it. Not retryable.
	ErrDeleted = errors.New("upload: the upload was deleted while the request wrote to it")
	// ErrLocked: another live request holds the upload and did not let
	// go within the takeover wait (a completion, the janitor); the
	// client retries shortly. It is the store's refusal, as is.
	ErrLocked = sessionstore.ErrLocked
	// ErrOffsetMismatch: the append's offset is not the upload's
	// (*OffsetMismatchError says both).
	ErrOffsetMismatch = errors.New("upload: offset mismatch")
	// ErrPastLength: the body goes past the upload's length.
	ErrPastLength = errors.New("upload: the body goes past the upload's length")
	// ErrChunkTooLarge: a body of unknown length ran past the largest
	// append (pipeline.MaxChunk) while the upload has room for more.
	ErrChunkTooLarge = errors.New("upload: the body is larger than one append may be")
	// ErrLengthChanged: a length was given for an upload whose length
	// is set, and differs from it.
	ErrLengthChanged = errors.New("upload: the upload's length cannot change once set")
	// ErrLengthConflict: the store refused the length (set meanwhile to
	// another value, or the offset moved past it).
	ErrLengthConflict = errors.New("upload: the length conflicts with the upload's state")
	// ErrLengthBelowOffset: a length below the bytes already stored
	// (*LengthBelowOffsetError says both).
	ErrLengthBelowOffset = errors.New("upload: the length is below the upload's offset")
)

// OffsetMismatchError is an append at Got to an upload at Want.
type OffsetMismatchError struct{ Want, Got int64 }

func (e *OffsetMismatchError) Error() string {
	return fmt.Sprintf("upload: offset %d does not match the upload's offset %d", e.Got, e.Want)
}

// Is makes errors.Is(err, ErrOffsetMismatch) true.
func (e *OffsetMismatchError) Is(target error) bool { return target == ErrOffsetMismatch }

// LengthBelowOffsetError is a length given below the upload's offset.
type LengthBelowOffsetError struct{ Length, Offset int64 }

func (e *LengthBelowOffsetError) Error() string {
	return fmt.Sprintf("upload: length %d is below the upload's offset %d", e.Length, e.Offset)
}

// Is makes errors.Is(err, ErrLengthBelowOffset) true.
func (e *LengthBelowOffsetError) Is(target error) bool { return target == ErrLengthBelowOffset }
