package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// janitorBatch is how many expired uploads one store call returns.
const janitorBatch = 100

// RunJanitor frees abandoned uploads every `every` until ctx ends: their
// stored bytes are aborted (S3: the multipart upload), then the session is
// deleted. Errors are logged and retried at the next round.
func (s *Server) RunJanitor(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.sweep(ctx, time.Now())
		s.sweepQuota(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep expires what is due at now and returns how many uploads it freed.
func (s *Server) sweep(ctx context.Context, now time.Time) int {
	freed := 0
	for ctx.Err() == nil {
		expired, err := s.store.Expired(ctx, now, janitorBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("janitor: list expired uploads", "err", err)
			}
			return freed
		}
		progress := 0
		for _, sess := range expired {
			if err := s.expire(ctx, sess); err != nil {
				s.log.Warn("janitor: expire upload", "upload_id", sess.ID, "err", err)
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

// expire frees one upload, unless a request holds its lease (a PATCH that
// is streaming right now is not abandoned).
func (s *Server) expire(ctx context.Context, sess sessionstore.Session) error {
	lease, err := s.store.AcquireLease(ctx, sess.ID, s.cfg.LeaseTTL, 0)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	lh, hctx, release := s.leases.Hold(ctx, lease)
	defer release()
	ctx = hctx
	// Re-read under the lease: a PATCH that committed (sliding the expiry)
	// or completed between Expired() and AcquireLease keeps its upload.
	sess, err = s.store.Session(ctx, sess.ID)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if sess.Completed || sess.ExpiresAt.After(time.Now()) {
		return nil
	}
	if err := s.pipe.Sink().Abort(ctx, uploadOf(sess)); err != nil {
		return err
	}
	// Only while the lease is still the janitor's: had it been lost during
	// the abort, a newer request may have committed to the upload.
	if err := s.deleteUpload(ctx, sess, sessionstore.EventUploadExpired, lh.Lease()); err != nil && !errors.Is(err, sessionstore.ErrNotFound) {
		return err
	}
	s.releaseQuota(ctx, sess.Account, sess.ID)
	s.metrics.expired.Add(1)
	s.log.Info("upload expired", "upload_id", sess.ID, "account", sess.Account, "offset", sess.Offset)
	return nil
}
