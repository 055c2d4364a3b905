package upload

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
)

// ErrInconsistentLength is the refusal of a request that said it ends the
// upload when its body of unknown length ended short of the upload's
// length.
var ErrInconsistentLength = errors.New("upload: the body ended short of the upload's length")

// StreamBody is a request body read in segments: it tells, reading a
// byte ahead if need be, whether it has ended.
type StreamBody interface {
	Body
	// AtEOF reports whether the body has ended, reading a byte ahead
	// (kept for the next Read) when that is not known yet.
	AtEOF() bool
	// Ended reports whether every byte of the body was read and
	// returned.
	Ended() bool
}

// StreamRequest is an append of one request's whole body, which may be
// longer than one append (pipeline.MaxChunk): the IETF draft's appends
// are unbounded, and a client that predates Upload-Limit sends a whole
// file in one request.
type StreamRequest struct {
	// Size is the body's length, -1 when unknown; 0: no body.
	Size int64
	// Checksum, when set, is verified before anything commits: the body
	// (at most MaxChunk) is then one append.
	Checksum *pipeline.Checksum
	// Done: the request ends the upload (its length is the offset after
	// the body when it was unknown).
	Done bool
	// Repr, when Done, is the SHA-256 the whole upload must have.
	Repr []byte
	// Body is the request's body (nil when Size is 0).
	Body StreamBody
	// Committed, when set, is told each offset a segment's commit made
	// durable.
	Committed func(offset int64)
	// Heads and Began are the request's, as in AppendRequest: every
	// segment is fenced with the fence the request first read.
	Heads int64
	Began time.Time
}

// AppendStream appends req's body at sess's offset in segments of at
// most MaxChunk, each under a lease of its own and committing what it
// stored, so that an interruption keeps every durable byte. A segment
// after the first takes nothing over from a newer request (ErrTakenOver).
// When the request ends the upload, its Repr-Digest is checked if the
// pipeline could not (CheckRepr), its length is set from a body of
// unknown length, and the upload is completed. It returns the session as
// last committed, also with an error.
func (s *Service) AppendStream(ctx context.Context, sess sessionstore.Session, req StreamRequest) (sessionstore.Session, error) {
	from := sess.Offset
	var repr []byte
	if req.Done {
		repr = req.Repr // verified by the commit that completes the upload
	}
	var err error
	switch {
	case req.Size == 0:
	case req.Checksum != nil:
		// One write, verified before anything commits.
		sess, err = s.Append(ctx, sess, AppendRequest{Offset: sess.Offset, Size: req.Size, Checksum: req.Checksum,
			Length: -1, Repr: repr, Body: req.Body, Heads: req.Heads, Began: req.Began})
	default:
		sess, err = s.segments(ctx, sess, req, repr)
	}
	if err != nil || !req.Done || sess.Completed {
		return sess, err
	}
	if repr != nil {
		if err := s.CheckRepr(ctx, sess, repr, sess.Offset != from); err != nil {
			return sess, err
		}
	}
	if sess.Length < 0 {
		if err := s.ApplyLength(ctx, &sess, sess.Offset, 0); err != nil {
			return sess, err
		}
	}
	if sess.Offset != sess.Length {
		return sess, ErrInconsistentLength
	}
	return s.Finish(ctx, sess)
}

// segments writes req's body as segments until it ends, its size is
// written, a segment stores nothing, or the upload completes.
func (s *Service) segments(ctx context.Context, sess sessionstore.Session, req StreamRequest, repr []byte) (sessionstore.Session, error) {
	// Registered for the whole request, not per segment: a release
	// request (a newer request, or offset retrieval on another node)
	// that arrives between two segments cuts it too, and the next
	// segment stores nothing more.
	defer s.leases.Register(sess.ID, req.Body)()
	start := sess.Offset
	for first := true; ; first = false {
		seg := int64(-1)
		if req.Size >= 0 {
			seg = min(req.Size-(sess.Offset-start), pipeline.MaxChunk)
		}
		before := sess.Offset
		sg := &segment{b: req.Body, left: pipeline.MaxChunk}
		if seg >= 0 {
			sg.left = seg
		}
		var err error
		sess, err = s.Append(ctx, sess, AppendRequest{Offset: sess.Offset, Size: seg, Length: -1, Repr: repr,
			Body: req.Body, Segment: sg, Follow: !first, Committed: req.Committed, Heads: req.Heads, Began: req.Began})
		if err != nil {
			return sess, err
		}
		if req.Body.Ended() || (req.Size >= 0 && sess.Offset-start >= req.Size) || sess.Offset == before || sess.Completed {
			return sess, nil
		}
	}
}

// segment is one segment of a request written in several: at most left
// bytes of b. It is a pipeline.BodyEnd: a segment that fills its limit
// tells whether the request's body ended exactly there (reading a byte
// ahead if need be), so that a chunked body of a multiple of MaxChunk
// that ends an upload has its Repr-Digest checked before its last segment
// is committed.
type segment struct {
	b    StreamBody
	left int64
}

func (s *segment) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.b.Read(p)
	s.left -= int64(n)
	return n, err
}

// Ended implements pipeline.BodyEnd.
func (s *segment) Ended() bool { return s.left <= 0 && s.b.AtEOF() }
