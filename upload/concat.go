package upload

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
)

// Refusals of a concatenation.
var (
	// ErrConcat: a listed partial upload cannot be concatenated
	// (*ConcatError says which and why).
	ErrConcat = errors.New("upload: invalid concatenation")
	// ErrUploadTooLarge: the upload would be longer than
	// pipeline.MaxUploadLength.
	ErrUploadTooLarge = errors.New("upload: longer than the largest upload")
)

// ConcatError is a partial upload a concatenation cannot use.
type ConcatError struct {
	ID string
	// Reason is why: "not found", "not partial" or "not complete".
	Reason string
}

func (e *ConcatError) Error() string {
	return fmt.Sprintf("upload: partial upload %s: %s", e.ID, e.Reason)
}

// Is makes errors.Is(err, ErrConcat) true.
func (e *ConcatError) Is(target error) bool { return target == ErrConcat }

// Reasons of a ConcatError.
const (
	ConcatNotFound    = "not found"
	ConcatNotPartial  = "not partial"
	ConcatNotComplete = "not complete"
)

// Concat creates sess, a final upload of its account, as the
// concatenation of its partial uploads sess.ConcatOf (all complete and
// of the account; one may be listed more than once, as TUS allows, and is
// then concatenated as often), with its asset a. The sink joins them
// (S3: server-side copies), the result is hashed, and the upload is
// complete (its asset ready) when Concat returns. Length and SizeBytes
// are set here, to the total. A failure after the creation leaves
// nothing behind; the client retries.
func (s *Service) Concat(ctx context.Context, sess *sessionstore.Session, a sessionstore.Asset) error {
	srcs, total, err := s.partials(ctx, sess.Account, sess.ConcatOf)
	if err != nil {
		return err
	}
	sess.Length, a.SizeBytes = total, total
	// The sink joins into storage that exists (S3: a multipart upload).
	if err := s.create(ctx, sess, a, false); err != nil {
		return err
	}
	if err := s.concatInto(ctx, *sess, srcs); err != nil {
		cctx := context.WithoutCancel(ctx)
		if aerr := s.Pipe.Sink().Abort(cctx, s.Describe(*sess)); aerr != nil {
			s.Log.Warn("free storage of failed concatenation", "upload_id", sess.ID, "err", aerr)
		}
		if _, derr := s.Store.DeleteUpload(cctx, sess.ID); derr != nil {
			s.Log.Warn("delete failed concatenation", "upload_id", sess.ID, "err", derr)
		}
		s.ReleaseQuota(cctx, sess.Account, sess.ID)
		return err
	}
	return nil
}

// partials checks the partial uploads ids of account and returns them as
// the sink's sources, in order, and their total length.
func (s *Service) partials(ctx context.Context, account string, ids []string) ([]pipeline.Upload, int64, error) {
	srcs := make([]pipeline.Upload, 0, len(ids))
	// Each partial is checked once, and may come back.
	seen := map[string]sessionstore.Session{}
	var total int64
	for _, pid := range ids {
		p, ok := seen[pid]
		if !ok {
			var err error
			if p, err = s.partial(ctx, account, pid); err != nil {
				return nil, 0, err
			}
			seen[pid] = p
		}
		total += p.Length
		srcs = append(srcs, s.Describe(p))
	}
	if total > pipeline.MaxUploadLength {
		return nil, 0, ErrUploadTooLarge
	}
	return srcs, total, nil
}

// partial is account's partial upload pid, complete.
func (s *Service) partial(ctx context.Context, account, pid string) (sessionstore.Session, error) {
	p, err := s.Own(ctx, account, pid)
	switch {
	case errors.Is(err, sessionstore.ErrNotFound):
		return p, &ConcatError{ID: pid, Reason: ConcatNotFound}
	case err != nil:
		return p, fmt.Errorf("upload: load partial %s: %w", pid, err)
	case !p.Partial:
		return p, &ConcatError{ID: pid, Reason: ConcatNotPartial}
	case p.Length < 0 || p.Offset != p.Length:
		return p, &ConcatError{ID: pid, Reason: ConcatNotComplete}
	}
	return s.Finish(ctx, p)
}

// concatInto builds sess's object from srcs and commits it complete.
func (s *Service) concatInto(ctx context.Context, sess sessionstore.Session, srcs []pipeline.Upload) error {
	lease, err := s.leases.Acquire(ctx, sess.ID, 0, NoFence)
	if err != nil {
		return fmt.Errorf("upload: acquire lease: %w", err)
	}
	h, wctx, release := s.leases.Hold(ctx, lease)
	defer release()
	storage, parts, err := s.Pipe.Sink().Concat(wctx, s.Describe(sess), srcs)
	if err != nil {
		return fmt.Errorf("upload: concatenate: %w", err)
	}
	state, sum, err := hashConcat(wctx, s.Pipe.Sink(), s.Describe(sess).Key, sess.Length, srcs[0])
	if err != nil {
		return err
	}
	ready := sessionstore.Asset{ID: sess.AssetID, Account: sess.Account, SessionID: sess.ID}
	if err := s.Events.EmitBefore(ctx, sessionstore.EventAssetReady, ready); err != nil {
		return err
	}
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer ccancel()
	_, err = s.Store.Commit(cctx, h.Lease(), sessionstore.Commit{
		ExpectOffset: 0, NewOffset: sess.Length, HashState: state, Storage: storage,
		Parts: parts, Length: -1, Complete: true, SHA256: sum,
	})
	if err != nil {
		return fmt.Errorf("upload: commit concatenation: %w", err)
	}
	s.SettleQuota(ctx, sess.Account, sess.ID, sess.Length)
	s.Tel.Completed()
	return nil
}

// hashConcat computes a concatenation's SHA-256. SHA-256 states do not
// compose, but the first partial upload's saved state is exactly the
// state after the concatenation's first bytes; the rest of the object is
// read once and hashed from there.
func hashConcat(ctx context.Context, sink pipeline.Sink, key string, want int64, first pipeline.Upload) ([]byte, string, error) {
	obj, err := sink.Open(ctx, key)
	if err != nil {
		return nil, "", fmt.Errorf("upload: open %s: %w", key, err)
	}
	defer func() { _ = obj.Close() }()
	if obj.Size() != want {
		return nil, "", fmt.Errorf("upload: concatenation %s has %d bytes, want %d", key, obj.Size(), want)
	}
	h, err := pipeline.ResumeHash(first.HashState)
	from := first.Offset
	if err != nil || from > want {
		// Not usable: hash the whole object.
		h, _ = pipeline.ResumeHash(nil)
		from = 0
	}
	buf := make([]byte, 1<<20)
	r := io.NewSectionReader(obj, from, obj.Size()-from)
	for {
		if err := ctx.Err(); err != nil {
			return nil, "", fmt.Errorf("upload: hash %s: %w", key, err)
		}
		n, err := r.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, "", fmt.Errorf("upload: hash %s: %w", key, err)
		}
	}
	state := pipeline.MarshalHash(h)
	return state, hex.EncodeToString(h.Sum(nil)), nil
}
