package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
)

// Body is an append's request body as the service reads it.
type Body interface {
	io.Reader
	// Cutter: a release request cuts the body (the upload is taken
	// over).
	Cutter
	// Taken is the cause a Cut gave (ErrTakenOver or ErrDeleted), nil
	// while the body is not cut.
	Taken() error
	// ReadErr is why a read of the body failed on the client's side (it
	// went away, stalled or crawled), nil while none did.
	ReadErr() error
	// Received is how many bytes the body gave so far.
	Received() int64
}

// AppendRequest is one append to an upload.
type AppendRequest struct {
	// Offset is where the client says the bytes go.
	Offset int64
	// Size is the body's length, -1 when unknown (the pipeline then
	// stops at MaxChunk).
	Size int64
	// Checksum, when set, is verified before anything commits.
	Checksum *pipeline.Checksum
	// Length is an upload length the request gives (-1: none); a
	// deferred length becomes it.
	Length int64
	// Repr is the SHA-256 the whole upload must have, when this append
	// ends it: the completing commit is verified first.
	Repr []byte
	// Body is the request's body.
	Body Body
	// Segment, when set, is what this append reads of Body: one segment
	// of a request written in several. Body is then registered by the
	// request for all its segments (Leases.Register).
	Segment io.Reader
	// Follow marks a segment after the first: it takes nothing over from
	// a newer request, but lets go (ErrTakenOver).
	Follow bool
	// Committed, when set, is told each offset a commit made durable.
	Committed func(offset int64)
	// Heads is the upload's head fence as the request first read it
	// (Session.HeadFence): every lease this append takes is refused once
	// an offset retrieval read the upload since.
	Heads int64
	// Began is when the request began: an offset retrieval that began
	// on this node after it makes it let go (Leases.HeadSince).
	Began time.Time
}

// Append streams req's body into the upload sess (as the request read
// it) under the upload's lease: durable prefixes are committed as they
// come (compare-and-set on the offset, fenced by the lease), and the last
// byte completes the upload before it returns. It returns the session as
// last committed, also with an error.
func (s *Service) Append(ctx context.Context, sess sessionstore.Session, req AppendRequest) (sessionstore.Session, error) {
	if err := s.admit(ctx, &sess, req); err != nil {
		return sess, err
	}
	ctx = s.Tel.WithUpload(ctx, sess.ID, sess.Account)
	lease, err := s.lease(ctx, sess, req)
	if err != nil {
		return sess, err
	}
	h, wctx, release := s.leases.Hold(ctx, lease)
	defer release()
	if s.leases.HeadSince(sess.ID, req.Began) {
		// An offset retrieval began after this request and answered
		// without seeing it: the client resumes from that offset.
		return lease.Session, ErrTakenOver
	}
	// Another request may have committed between our read and the lease;
	// the lease carries the session as it stands now.
	sess = lease.Session
	if done, err := underLease(sess, req); done || err != nil {
		return sess, err
	}
	// An upload without storage yet gets it now, unless this write is
	// the whole upload and the sink stores it in one request.
	whole := putsWhole(s.Deps, sess, req)
	if !whole {
		if sess, err = s.EnsureStorage(wctx, h.Lease(), sess); err != nil {
			return sess, err
		}
	}
	cur, err := s.write(ctx, wctx, h, sess, req, whole)
	if err != nil {
		return cur, err
	}
	// Every byte is committed: the upload is whole.
	if cur.Length >= 0 && cur.Offset == cur.Length && !cur.Completed {
		return s.complete(wctx, h.Lease(), cur)
	}
	return cur, nil
}

// underLease checks req against sess as the lease found it: an error,
// or done (an empty append to a completed upload: nothing to write).
func underLease(sess sessionstore.Session, req AppendRequest) (done bool, err error) {
	switch {
	case sess.Offset != req.Offset:
		return false, &OffsetMismatchError{Want: sess.Offset, Got: req.Offset}
	case sess.Completed && req.Size != 0:
		return false, ErrPastLength
	case sess.Completed:
		return true, nil
	case sess.Length >= 0 && req.Size > sess.Length-sess.Offset:
		return false, ErrPastLength
	}
	return false, nil
}

// putsWhole reports whether req, an append to sess (as the lease found
// it), is the whole upload in one body into storage not yet made, which
// the sink stores in one request (pipeline.Putter). A failed put leaves
// the upload as it was: offset 0, storage still to create.
func putsWhole(d Deps, sess sessionstore.Session, req AppendRequest) bool {
	pt, ok := d.Pipe.Sink().(pipeline.Putter)
	return ok && StoragePending(sess) && req.Segment == nil && req.Offset == 0 &&
		pt.PutsWhole(d.Describe(sess), req.Size)
}

// admit is what an append is refused for before it takes the lease; it
// applies the request's length and reserves the quota the bytes need.
func (s *Service) admit(ctx context.Context, sess *sessionstore.Session, req AppendRequest) error {
	if sess.Offset != req.Offset {
		return &OffsetMismatchError{Want: sess.Offset, Got: req.Offset}
	}
	if s.leases.HeadSince(sess.ID, req.Began) {
		// An offset retrieval began after this request: the client
		// resumes from what it answered. Checked before the lease too,
		// so that this older request takes nothing over from the append
		// that follows the HEAD.
		return ErrTakenOver
	}
	if err := s.ApplyLength(ctx, sess, req.Length, req.Size); err != nil {
		return err
	}
	if sess.Length < 0 {
		// A length still deferred reserves as it grows, before the bytes
		// come.
		if err := s.ReserveQuota(ctx, sess.Account, sess.ID, deferredReservation(*sess, req.Size)); err != nil {
			return err
		}
	}
	if sess.Length >= 0 && req.Size > sess.Length-sess.Offset {
		return ErrPastLength
	}
	return nil
}

// lease takes the upload's lease for the append: taking it over from an
// earlier request, or, for a later segment, only if it is free.
func (s *Service) lease(ctx context.Context, sess sessionstore.Session, req AppendRequest) (sessionstore.Lease, error) {
	parts := s.Pipe.Sink().PartsFor(s.Describe(sess), req.Size)
	var lease sessionstore.Lease
	var err error
	if req.Follow {
		// Between two segments a newer request took the upload: it wins.
		if lease, err = s.leases.Acquire(ctx, sess.ID, parts, req.Heads); errors.Is(err, sessionstore.ErrLocked) {
			return lease, ErrTakenOver
		}
	} else {
		lease, err = s.leases.Take(ctx, sess.ID, parts, false, req.Heads)
	}
	switch {
	case errors.Is(err, sessionstore.ErrFenced):
		// An offset retrieval, on any node, read the upload after this
		// request did and answered without it: the client resumes from
		// that offset. Nothing was read, nothing taken over.
		return lease, ErrTakenOver
	case errors.Is(err, sessionstore.ErrNotFound):
		// The upload was read by this request a moment ago: a DELETE
		// removed it before this write took the lease.
		return lease, ErrDeleted
	case err != nil:
		return lease, fmt.Errorf("upload: acquire lease: %w", err)
	}
	return lease, nil
}

// write streams the body into storage under h, sess being the upload as
// the lease found it. It returns the session as last committed and why
// the write failed, as the client is to be told.
func (s *Service) write(ctx, wctx context.Context, h *Held, sess sessionstore.Session, req AppendRequest, whole bool) (sessionstore.Session, error) {
	body, src := req.Body, req.Segment
	if src == nil {
		src = body
		defer s.leases.Register(sess.ID, body)()
	}
	cur := sess
	lease := h.Lease()
	s.Tel.Writing(1)
	start := time.Now()
	_, werr := s.Pipe.Write(wctx, s.Describe(sess), pipeline.Chunk{
		Body: src, Size: req.Size, Checksum: req.Checksum, Repr: req.Repr,
		Parts:  pipeline.PartRange{First: lease.FirstPart, Count: lease.Parts},
		Commit: s.committer(h, &cur, req.Committed, req.Segment == nil && req.Size >= 0 && sess.Length == req.Offset+req.Size),
		Whole:  whole,
	})
	s.Tel.Writing(-1)
	s.Tel.Wrote(time.Since(start), body.Received())
	if tl, ok := errors.AsType[*pipeline.TailLostError](werr); ok {
		cur = s.fallBack(ctx, h, cur, tl)
	}
	if werr == nil {
		return cur, nil
	}
	switch cause := context.Cause(wctx); {
	case body.Taken() != nil:
		// A newer request took the upload over: answer what it did to
		// it (ErrTakenOver, or ErrDeleted for a DELETE).
		werr = body.Taken()
	case body.ReadErr() != nil:
		// The client went away or stalled: that is the story, whatever
		// the sink made of the failed read.
		werr = body.ReadErr()
	case cause != nil && ctx.Err() == nil && !errors.Is(cause, context.Canceled):
		werr = fmt.Errorf("upload: write stopped: %w (%w)", cause, werr)
	}
	// A failed write completes nothing, even when it committed the last
	// byte (a body without a length that runs past the limit: the sink
	// keeps what fits, then reports ErrTooLarge). The client was told the
	// request failed; a request that succeeds (a HEAD, an empty append at
	// the final offset) completes the upload.
	if errors.Is(werr, pipeline.ErrTooLarge) {
		werr = fmt.Errorf("%w: %w", overflow(sess), werr)
	}
	if errors.Is(werr, sessionstore.ErrLeaseLost) && deletedUnder(ctx, s.Store, cur.ID) {
		// A DELETE that did not wait for this write (takeover timed out)
		// removed the upload: not a retryable lost lease.
		werr = ErrDeleted
	}
	if errors.Is(werr, ErrDeleted) {
		s.freeLate(ctx, cur)
	}
	s.Tel.WriteFailed(werr, body.Taken() != nil)
	return cur, fmt.Errorf("upload: write chunk: %w", werr)
}

// overflow is why a body without a length that ran past the limit was
// refused: past the upload's length, or past the largest append while
// the upload has room for more.
func overflow(sess sessionstore.Session) error {
	if sess.Length < 0 || sess.Length-sess.Offset > pipeline.MaxChunk {
		return ErrChunkTooLarge
	}
	return ErrPastLength
}
