package upload

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// Errors of a request that names an upload.
var (
	// ErrNotFound: no such upload, or another account's (never
	// revealing which). It wraps sessionstore.ErrNotFound.
	ErrNotFound = errors.New("upload: no such upload")
	// ErrExpired: the upload expired; the client starts a new one.
	ErrExpired = errors.New("upload: the upload expired")
)

// reader reads a session: Store.Session, or OffsetSession for offset
// retrieval.
type reader func(ctx context.Context, id string) (sessionstore.Session, error)

// Own returns account's upload id. Another account's upload is
// ErrNotFound exactly like an unknown id, so every caller answers both
// alike.
func (s *Service) Own(ctx context.Context, account, id string) (sessionstore.Session, error) {
	return ownBy(ctx, account, id, s.Store.Session)
}

// ownBy is Own through read.
func ownBy(ctx context.Context, account, id string, read reader) (sessionstore.Session, error) {
	sess, err := read(ctx, id)
	if err == nil && sess.Account != account {
		return sessionstore.Session{}, fmt.Errorf("%w: session %s of another account: %w", ErrNotFound, id, sessionstore.ErrNotFound)
	}
	if errors.Is(err, sessionstore.ErrNotFound) {
		return sess, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return sess, err
}

// Load is Own for a request that works on the upload: ErrExpired when
// it expired (and is not complete).
func (s *Service) Load(ctx context.Context, account, id string) (sessionstore.Session, error) {
	return loadBy(ctx, account, id, s.Store.Session)
}

// loadBy is Load through read.
func loadBy(ctx context.Context, account, id string, read reader) (sessionstore.Session, error) {
	sess, err := ownBy(ctx, account, id, read)
	if errors.Is(err, ErrNotFound) {
		return sess, err
	}
	if err != nil {
		return sess, fmt.Errorf("upload: load session: %w", err)
	}
	if !sess.Completed && !sess.ExpiresAt.IsZero() && time.Now().After(sess.ExpiresAt) {
		return sess, ErrExpired
	}
	return sess, nil
}

// Offset is offset retrieval (TUS HEAD, the draft's HEAD): account's
// upload id as the next append must find it. A write that holds the
// upload's lease is taken over first (Leases.Settle), and one that holds
// none when the session is read, on any node, is fenced off: the read
// grows the upload's head fence (Store.OffsetSession), and that write's
// next lease is refused (ErrTakenOver). An upload whose bytes are all
// stored is completed first (Finish), unless a request holds it.
//
// With an error, the session is the last one read without error (zero
// when the first read failed): the front door tells the client that
// upload's expiry with its refusal.
func (s *Service) Offset(ctx context.Context, account, id string) (sessionstore.Session, error) {
	// Before the session is read: a write of this node whose request
	// began before lets go at its lease (Leases.HeadSince), also when it
	// read the upload after the fence grew.
	s.leases.HeadBegan(id)
	sess, err := loadBy(ctx, account, id, s.Store.OffsetSession)
	if err != nil {
		return sessionstore.Session{}, err
	}
	if sess.Leased && !sess.Completed {
		if err := s.leases.Settle(ctx, id); errors.Is(err, sessionstore.ErrNotFound) {
			// A DELETE removed the upload meanwhile.
			return sess, fmt.Errorf("%w: %w", ErrNotFound, err)
		} else if err != nil {
			return sess, err
		}
		settled, err := s.Load(ctx, account, id)
		if err != nil {
			return sess, err
		}
		sess = settled
	}
	if fin, err := s.Finish(ctx, sess); err == nil {
		sess = fin
	} else if !errors.Is(err, sessionstore.ErrLocked) {
		return sess, err
	}
	return sess, nil
}
