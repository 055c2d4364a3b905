package upload

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
)

// LengthWith is the upload's length once an append's length is applied
// (length < 0: none given; -1 back: still deferred), or why that length
// cannot be. size is the append's body size (-1: unknown).
func LengthWith(sess sessionstore.Session, length, size int64) (int64, error) {
	switch {
	case length < 0:
		return sess.Length, nil
	case sess.Length >= 0 && sess.Length != length:
		return 0, ErrLengthChanged
	case length < sess.Offset:
		// The bytes are stored already: the length cannot be below them.
		return 0, &LengthBelowOffsetError{Length: length, Offset: sess.Offset}
	case length < sess.Offset+max(size, 0):
		return 0, ErrPastLength
	}
	return length, nil
}

// ApplyLength sets a deferred upload's length from an append's (a TUS
// PATCH's Upload-Length, or a draft append that carries it or ends the
// upload). It is where a deferred length becomes known, whatever the
// protocol, so it reserves that length first: the holds taken while the
// length was deferred cover only the bytes written so far, and the
// writes that follow reserve nothing once the length is set. A refusal
// leaves the length unset and the hold as it was.
func (s *Service) ApplyLength(ctx context.Context, sess *sessionstore.Session, length, size int64) error {
	n, err := LengthWith(*sess, length, size)
	if err != nil || n == sess.Length {
		return err
	}
	if err := s.ReserveQuota(ctx, sess.Account, sess.ID, n); err != nil {
		return err
	}
	if err := s.Store.SetLength(ctx, sess.ID, n); err != nil {
		if errors.Is(err, sessionstore.ErrOffsetConflict) {
			return fmt.Errorf("%w: %w", ErrLengthConflict, err)
		}
		return fmt.Errorf("upload: set length: %w", err)
	}
	sess.Length = n
	return nil
}

// ReserveQuota grows upload id's reservation to n bytes (counting the
// upload on its first reservation): a *sessionstore.QuotaError
// (sessionstore.ErrQuotaExceeded) names the limit it would pass.
func (s *Service) ReserveQuota(ctx context.Context, account, id string, n int64) error {
	err := s.Store.ReserveQuota(ctx, account, id, n, s.cfg.QuotaDefaults)
	if _, ok := errors.AsType[*sessionstore.QuotaError](err); ok {
		return err
	}
	if err != nil {
		return fmt.Errorf("upload: reserve quota: %w", err)
	}
	return nil
}

// deferredReservation is what an append of size bytes (-1: unknown) to
// an upload whose length is still deferred may take it to: its offset
// plus the body's length, or the 64 MiB cap of a body of unknown length.
func deferredReservation(sess sessionstore.Session, size int64) int64 {
	if size >= 0 {
		return sess.Offset + size
	}
	return sess.Offset + pipeline.MaxChunk
}

// quotaCleanupTimeout bounds a settle, which runs even when the request
// is canceled (what it undoes must not stay counted).
const quotaCleanupTimeout = 5 * time.Second

// SettleQuota turns a completed upload's reservation into size stored
// bytes. A failure is logged: the janitor settles the hold later.
func (s *Service) SettleQuota(ctx context.Context, account, id string, size int64) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), quotaCleanupTimeout)
	defer cancel()
	if err := s.Store.SettleQuota(cctx, account, id, size); err != nil {
		s.Log.Warn("quota: settle completed upload", "upload_id", id, "account", account, "err", err)
	}
}
