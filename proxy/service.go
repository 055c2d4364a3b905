package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/upload"
)

// The upload service (upload.Service) is the domain behind the
// handlers: a handler parses its request into one service call and
// renders the result. This file is the glue: the service's view of the
// server's metrics, traces and request bodies, and the answer each
// domain error gets.

// newService makes the node's upload service over the server's store,
// pipeline, metrics and log.
func (s *Server) newService() *upload.Service {
	return upload.New(upload.Config{
		LeaseTTL: s.cfg.LeaseTTL, TakeoverWait: s.cfg.TakeoverWait,
		UploadExpiry: s.cfg.UploadExpiry, QuotaDefaults: s.cfg.QuotaDefaults,
	}, upload.Deps{Store: s.store, Pipe: s.pipe, Events: upload.StoreEvents{Store: s.store}, Tel: serviceTel{s}, Log: s.log, Describe: uploadOf})
}

// serviceTel tells the server's metrics and traces what the service
// does.
type serviceTel struct{ s *Server }

func (t serviceTel) TookOver()      { t.s.metrics.takeovers.Add(1) }
func (t serviceTel) LeaseLost()     { t.s.metrics.lost.Inc() }
func (t serviceTel) LeaseReleased() { t.s.metrics.released.Inc() }
func (t serviceTel) Completed()     { t.s.metrics.completed.Add(1) }
func (t serviceTel) Deleted()       { t.s.metrics.deleted.Add(1) }
func (t serviceTel) Created()       { t.s.metrics.created.Add(1) }
func (t serviceTel) Expired()       { t.s.metrics.expired.Add(1) }

func (t serviceTel) WithUpload(ctx context.Context, id, account string) context.Context {
	return t.s.withUpload(ctx, id, account)
}

func (t serviceTel) Span(ctx context.Context, name string) (context.Context, func(error)) {
	return t.s.tel.span(ctx, name)
}

func (t serviceTel) Writing(delta int) { t.s.metrics.activeUploads.Add(int64(delta)) }

// Streaming says whether a PATCH body is being taken now: the probe
// workers rest between probes while it is (probe.Config.Busy).
func (s *Server) Streaming() bool { return s.metrics.activeUploads.Load() > 0 }

func (t serviceTel) Wrote(d time.Duration, n int64) {
	t.s.metrics.patchSeconds.Observe(d.Seconds())
	t.s.metrics.patchBytes.Observe(float64(n))
}

func (t serviceTel) WriteFailed(err error, cut bool) {
	t.s.metrics.failed.WithLabelValues(failReason(err, cut)).Inc()
}

func (t serviceTel) Committed(d time.Duration, err error) {
	t.s.metrics.commitSeconds.Observe(d.Seconds())
	switch {
	case errors.Is(err, sessionstore.ErrLeaseLost):
		t.s.metrics.lost.Inc()
	case err == nil:
		t.s.metrics.commits.Add(1)
	}
}

// failReason is the roughy_uploads_failed_total label of a failed write;
// cut says a newer request cut its body.
func failReason(err error, cut bool) string {
	switch {
	case cut:
		return "taken_over"
	case errors.Is(err, errSlowBody):
		return "slow_body"
	case errors.Is(err, errBodyRead), errors.Is(err, pipeline.ErrTruncated):
		return "client"
	case errors.Is(err, pipeline.ErrChecksumMismatch), errors.Is(err, pipeline.ErrReprDigestMismatch):
		return "checksum"
	case errors.Is(err, pipeline.ErrTooLarge):
		return "too_large"
	case errors.Is(err, pipeline.ErrStorageFull):
		return "storage_full"
	case errors.Is(err, pipeline.ErrStorage):
		return "storage"
	case errors.Is(err, sessionstore.ErrLeaseLost):
		return "lease_lost"
	case errors.Is(err, sessionstore.ErrUnavailable):
		return "store"
	}
	return "other"
}

// appendBody is a request body as the service reads it.
type appendBody struct{ *bodyReader }

// Cut cuts the body with the answer for cause (releasable).
func (b appendBody) Cut(cause error) bool { return releasable{b.bodyReader}.Cut(cause) }

// Taken is the domain error of the cut, if the body was cut.
func (b appendBody) Taken() error {
	switch b.taken.Load() {
	case nil:
		return nil
	case errDeletedUnder:
		return upload.ErrDeleted
	}
	return upload.ErrTakenOver
}

// ReadErr is why a read of the body failed on the client's side.
func (b appendBody) ReadErr() error {
	if b.err == nil {
		return nil
	}
	return b.err
}

// Received is how many bytes the body gave so far.
func (b appendBody) Received() int64 { return b.n }

// AtEOF reports whether the body has ended, reading a byte ahead.
func (b appendBody) AtEOF() bool { return b.atEOF() }

// Ended reports whether every byte of the body was read and returned.
func (b appendBody) Ended() bool { return b.ended() }

// httpError is err with the answer of its domain error in front (both
// renderers read the first *Error of the chain); other errors are left
// as they are.
func httpError(err error) error {
	if err == nil {
		return nil
	}
	e := answerOf(err)
	if e == nil {
		return err
	}
	return fmt.Errorf("%w: %w", e, err)
}

// answerOf is the answer of err's domain error, nil when it has none.
func answerOf(err error) *Error {
	if om, ok := errors.AsType[*upload.OffsetMismatchError](err); ok {
		return errOffset(om.Want, om.Got)
	}
	if lb, ok := errors.AsType[*upload.LengthBelowOffsetError](err); ok {
		return codeInvalidUploadLength.withf("Upload-Length %d is below the upload's offset %d", lb.Length, lb.Offset)
	}
	if qe, ok := errors.AsType[*sessionstore.QuotaError](err); ok {
		return quotaExceeded(qe)
	}
	if ce, ok := errors.AsType[*upload.ConcatError](err); ok {
		return concatAnswer(ce)
	}
	for _, a := range domainAnswers {
		if errors.Is(err, a.err) {
			return a.answer
		}
	}
	return nil
}

// domainAnswers are the answers of the service's sentinel errors, in the
// order they are looked for.
var domainAnswers = []struct {
	err    error
	answer *Error
}{
	{upload.ErrNotFound, errNotFound},
	{upload.ErrExpired, errExpired},
	{upload.ErrDirectUnknown, errDirectToken},
	{upload.ErrDirectRevoked, errDirectRevoked},
	{upload.ErrDirectExpired, errDirectExpired},
	{upload.ErrDirectUsed, errDirectUsed},
	{upload.ErrReprFailed, errReprFailed},
	{upload.ErrReprMismatch, errReprMismatch},
	{upload.ErrInconsistentLength, errInconsistentLength},
	{upload.ErrUploadTooLarge, errUploadTooLarge},
	{upload.ErrTakenOver, errTakenOver},
	{upload.ErrDeleted, errDeletedUnder},
	{upload.ErrChunkTooLarge, errChunkTooBig},
	{upload.ErrPastLength, errPastLength},
	{upload.ErrLengthChanged, codeInvalidLength.with("Upload-Length cannot change once set")},
	{upload.ErrLengthConflict, codeInvalidLength.with("Upload-Length conflicts with the upload's state")},
}

// concatAnswer is the 400 invalid_concat of a partial upload a
// concatenation cannot use.
func concatAnswer(ce *upload.ConcatError) *Error {
	switch ce.Reason {
	case upload.ConcatNotPartial:
		return errConcat("upload %s is not a partial upload (Upload-Concat: partial)", ce.ID)
	case upload.ConcatNotComplete:
		return errConcat("partial upload %s is not complete", ce.ID)
	}
	return errConcat("partial upload %s not found", ce.ID)
}
