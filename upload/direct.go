package upload

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// Refusals of a creation through a direct upload grant.
var (
	// ErrDirectUnknown: no such grant.
	ErrDirectUnknown = errors.New("upload: unknown direct upload")
	// ErrDirectRevoked: its creator revoked the grant.
	ErrDirectRevoked = errors.New("upload: direct upload revoked")
	// ErrDirectExpired: the grant expired before an upload was created
	// with it.
	ErrDirectExpired = errors.New("upload: direct upload expired")
	// ErrDirectUsed: the grant already created its upload.
	ErrDirectUsed = errors.New("upload: direct upload used")
)

// Claim creates sess, with its asset, as the one upload of grant d.
// Unlike Create it claims the grant in the store first and makes the
// storage after: every upload of a grant has the same id and so the same
// storage key, and a creation that lost the race must not create (local:
// truncate) or free (S3: delete the tails of) the winner's storage. The
// claim stores the session with StorageToCreate; the storage is then
// made under the upload's lease and its state committed. When that fails
// (storage down), the grant is used but its upload has no storage yet: a
// repeat creation, or the first append, makes it (a grant must not be
// lost to one transient failure). A repeat of a creation that is done is
// refused as a second one (ErrDirectUsed). On success sess and asset are
// the upload as stored.
func (s *Service) Claim(ctx context.Context, sess *sessionstore.Session, asset *sessionstore.Asset, d *sessionstore.DirectUpload) error {
	if d.Created {
		return s.repeatClaim(ctx, sess, asset)
	}
	// The asset.created event is queued before the claim, and the quota
	// is reserved first, as for any creation. A losing racer (ErrExists)
	// leaves the hold alone: it has the winner's id, so it is the
	// winner's hold.
	if err := s.Events.EmitBefore(ctx, sessionstore.EventAssetCreated, *asset); err != nil {
		return err
	}
	if err := s.ReserveQuota(ctx, sess.Account, sess.ID, max(sess.Length, 0)); err != nil {
		return err
	}
	sess.Storage = StorageToCreate
	// The claim's own id: the store grants it again if it is resent (a
	// Redis reply lost on the way), and no other request.
	err := s.Store.ClaimDirectUpload(ctx, d.ID, rand.Text(), time.Now(), *sess, *asset)
	if err != nil && !errors.Is(err, sessionstore.ErrExists) {
		s.ReleaseQuota(ctx, sess.Account, sess.ID)
	}
	switch {
	case errors.Is(err, sessionstore.ErrExists):
		return s.repeatClaim(ctx, sess, asset)
	case errors.Is(err, sessionstore.ErrRevoked):
		return ErrDirectRevoked
	case errors.Is(err, sessionstore.ErrDirectExpired):
		return ErrDirectExpired
	case errors.Is(err, sessionstore.ErrNotFound):
		return ErrDirectUnknown
	case err != nil:
		return fmt.Errorf("upload: claim direct upload: %w", err)
	}
	s.Tel.Created()
	saved, err := s.directStorage(ctx, sess.ID)
	if err != nil {
		return err
	}
	*sess = saved
	return nil
}

// repeatClaim answers a creation on a grant whose upload exists: when
// the creation that claimed it failed before the upload had storage,
// this one makes the storage and answers as the creation (same length,
// the upload as stored); otherwise it is a second creation, refused.
func (s *Service) repeatClaim(ctx context.Context, sess *sessionstore.Session, asset *sessionstore.Asset) error {
	cur, err := s.Store.Session(ctx, sess.ID)
	switch {
	case errors.Is(err, sessionstore.ErrNotFound):
		return ErrDirectUsed // deleted
	case err != nil:
		return fmt.Errorf("upload: load direct upload's session: %w", err)
	case !StoragePending(cur) || cur.Length != sess.Length:
		return ErrDirectUsed
	}
	// The hold is the claim's; a claim whose answer was lost counted as
	// failed and gave it back. Reserving again is a no-op otherwise.
	if err := s.ReserveQuota(ctx, cur.Account, cur.ID, max(cur.Length, 0)); err != nil {
		return err
	}
	saved, err := s.directStorage(ctx, sess.ID)
	if err != nil {
		return err
	}
	a, err := s.Store.Asset(ctx, sess.ID)
	if err != nil {
		return fmt.Errorf("upload: load direct upload's asset: %w", err)
	}
	// The head fence as this request read it (the commit that saved the
	// storage need not report it).
	saved.HeadFence = cur.HeadFence
	*sess, *asset = saved, a
	return nil
}

// directStorage makes the storage of a claimed direct upload under its
// lease, for the request that answers as its creation: exactly one does,
// so a request that finds the lease taken or the storage made is refused
// as a second creation.
func (s *Service) directStorage(ctx context.Context, id string) (sessionstore.Session, error) {
	l, err := s.leases.Acquire(ctx, id, 0, NoFence)
	switch {
	case errors.Is(err, sessionstore.ErrLocked), errors.Is(err, sessionstore.ErrNotFound):
		return sessionstore.Session{}, ErrDirectUsed
	case err != nil:
		return sessionstore.Session{}, fmt.Errorf("upload: acquire lease to create storage: %w", err)
	}
	defer func() { _ = s.Store.ReleaseLease(context.WithoutCancel(ctx), l) }()
	defer s.leases.Holding(l)()
	if !StoragePending(l.Session) {
		return sessionstore.Session{}, ErrDirectUsed
	}
	return s.EnsureStorage(ctx, l, l.Session)
}
