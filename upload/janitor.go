package upload

import (
	"context"
	"errors"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// janitorBatch is how many expired uploads one store call returns.
const janitorBatch = 100

// RunJanitor frees abandoned uploads every `every` until ctx ends: their
// stored bytes are aborted (S3: the multipart upload), then the session
// is deleted; and it repairs the quota holds a crash left behind. Errors
// are logged and retried at the next round.
func (s *Service) RunJanitor(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.Sweep(ctx, time.Now())
		s.SweepQuota(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep expires what is due at now and returns how many uploads it
// freed.
func (s *Service) Sweep(ctx context.Context, now time.Time) int {
	freed := 0
	for ctx.Err() == nil {
		expired, err := s.Store.Expired(ctx, now, janitorBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.Log.Warn("janitor: list expired uploads", "err", err)
			}
			return freed
		}
		progress := 0
		for _, sess := range expired {
			if err := s.Expire(ctx, sess); err != nil {
				s.Log.Warn("janitor: expire upload", "upload_id", sess.ID, "err", err)
				continue
			}
			progress++
		}
		freed += progress
		if len(expired) < janitorBatch || progress == 0 {
			return freed
		}
	}
	return freed
}

// Expire frees one expired upload, unless a request holds its lease (an
// append that is streaming right now is not abandoned).
func (s *Service) Expire(ctx context.Context, sess sessionstore.Session) error {
	lease, err := s.leases.Acquire(ctx, sess.ID, 0, NoFence)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	h, hctx, release := s.leases.Hold(ctx, lease)
	defer release()
	ctx = hctx
	// Re-read under the lease: an append that committed (sliding the
	// expiry) or completed between Expired() and the lease keeps its
	// upload.
	sess, err = s.Store.Session(ctx, sess.ID)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if sess.Completed || sess.ExpiresAt.After(time.Now()) {
		return nil
	}
	if err := s.Pipe.Sink().Abort(ctx, s.Describe(sess)); err != nil {
		return err
	}
	// Only while the lease is still the janitor's: had it been lost during
	// the abort, a newer request may have committed to the upload.
	if err := s.remove(ctx, sess, sessionstore.EventUploadExpired, h.Lease()); err != nil && !errors.Is(err, sessionstore.ErrNotFound) {
		return err
	}
	s.ReleaseQuota(ctx, sess.Account, sess.ID)
	s.Tel.Expired()
	s.Log.Info("upload expired", "upload_id", sess.ID, "account", sess.Account, "offset", sess.Offset)
	return nil
}

// Quota repair: a hold not touched for QuotaSweepGrace is checked
// against its upload (a creation reserves a moment before it stores the
// session, and must not be mistaken for one that crashed in between), at
// most quotaSweepBatch per round.
const (
	QuotaSweepGrace = time.Minute
	quotaSweepBatch = 100
)

// SweepQuota repairs holds a crash left behind (a node died between
// reserving and creating, completing and settling, deleting and
// releasing): a hold not touched for QuotaSweepGrace is checked against
// its upload, released when the upload is gone, settled when it is
// complete, and touched when it is still in progress.
func (s *Service) SweepQuota(ctx context.Context, now time.Time) {
	holds, err := s.Store.QuotaHolds(ctx, now.Add(-QuotaSweepGrace), quotaSweepBatch)
	if err != nil {
		if ctx.Err() == nil {
			s.Log.Warn("janitor: list quota holds", "err", err)
		}
		return
	}
	for _, h := range holds {
		sess, err := s.Store.Session(ctx, h.UploadID)
		switch {
		case errors.Is(err, sessionstore.ErrNotFound) || err == nil && sess.Account != h.Account:
			err = s.Store.ReleaseQuota(ctx, h.Account, h.UploadID)
		case err != nil:
		case sess.Completed:
			err = s.Store.SettleQuota(ctx, h.Account, h.UploadID, sess.Offset)
		default:
			err = s.Store.TouchQuota(ctx, h.Account, h.UploadID)
		}
		if err != nil {
			s.Log.Warn("janitor: repair quota hold", "upload_id", h.UploadID, "account", h.Account, "err", err)
		}
	}
}
