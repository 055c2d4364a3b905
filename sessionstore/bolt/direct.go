package bolt

import (
	"context"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/roughy/ingest/sessionstore"
)

// boltBucketDirect holds direct uploads: id → JSON DirectUpload. It is
// made by the first CreateDirectUpload, so a store that never saw one
// has no such bucket (reads answer ErrNotFound).
var boltBucketDirect = []byte("direct")

// errBoltRefused rolls back a transaction that refused: the refusal itself
// travels beside it, so that boltErr does not make it ErrUnavailable.
var errBoltRefused = errors.New("sessionstore: refused")

// CreateDirectUpload stores d and its waiting asset a.
func (l *Store) CreateDirectUpload(ctx context.Context, d sessionstore.DirectUpload, a sessionstore.Asset) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.update("create direct upload", func(tx *bbolt.Tx) error {
		direct, err := tx.CreateBucketIfNotExists(boltBucketDirect)
		if err != nil {
			return err
		}
		if direct.Get([]byte(d.ID)) != nil || tx.Bucket(boltBucketAssets).Get([]byte(a.ID)) != nil ||
			tx.Bucket(boltBucketSessions).Get([]byte(d.ID)) != nil {
			return fmt.Errorf("direct upload %s: %w", d.ID, sessionstore.ErrExists)
		}
		if err := boltPut(tx.Bucket(boltBucketAssets), []byte(a.ID), a); err != nil {
			return err
		}
		return boltPut(direct, []byte(d.ID), d)
	})
}

// DirectUpload returns a direct upload, revoked ones too.
func (l *Store) DirectUpload(ctx context.Context, id string) (sessionstore.DirectUpload, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.DirectUpload{}, err
	}
	var d sessionstore.DirectUpload
	err := l.view("direct upload", func(tx *bbolt.Tx) error {
		var err error
		d, err = boltDirect(tx, id)
		return err
	})
	return d, err
}

func boltDirect(tx *bbolt.Tx, id string) (sessionstore.DirectUpload, error) {
	var d sessionstore.DirectUpload
	b := tx.Bucket(boltBucketDirect)
	if b == nil {
		return d, fmt.Errorf("direct upload %s: %w", id, sessionstore.ErrNotFound)
	}
	err := boltGet(b, []byte(id), &d)
	return d, err
}

// ClaimDirectUpload creates the upload of direct upload id, once.
func (l *Store) ClaimDirectUpload(ctx context.Context, id, claim string, now time.Time, s sessionstore.Session, a sessionstore.Asset) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if claim == "" {
		return fmt.Errorf("sessionstore: local claim direct upload %s: empty claim", id)
	}
	if s.NextPart < 1 {
		s.NextPart = 1
	}
	var refusal error
	err := l.update("claim direct upload", func(tx *bbolt.Tx) error {
		refusal = nil // the function may run more than once
		d, err := boltDirect(tx, id)
		if err != nil {
			return err
		}
		var applied bool
		if applied, refusal = boltClaimCheck(tx, id, d, claim, now); applied {
			return nil
		}
		if refusal != nil {
			return errBoltRefused
		}
		// The waiting asset makes way for the uploading one.
		if err := tx.Bucket(boltBucketAssets).Delete([]byte(id)); err != nil {
			return err
		}
		if err := boltCreateUpload(tx, s, a); err != nil {
			return err
		}
		d.Created, d.Claim = true, claim
		return boltPut(tx.Bucket(boltBucketDirect), []byte(id), d)
	})
	if refusal != nil {
		return fmt.Errorf("sessionstore: local claim direct upload %s: %w", id, refusal)
	}
	return err
}

// boltClaimCheck tells whether claim was applied to direct upload id (d)
// already, or else why it may not be claimed now (nil when it may).
func boltClaimCheck(tx *bbolt.Tx, id string, d sessionstore.DirectUpload, claim string, now time.Time) (applied bool, refusal error) {
	switch {
	case d.Created && claim != "" && d.Claim == claim && tx.Bucket(boltBucketSessions).Get([]byte(id)) != nil:
		// This claim was applied already (a revocation since keeps
		// its upload): nothing to do.
		return true, nil
	case d.Revoked:
		return false, sessionstore.ErrRevoked
	case d.Created:
		// Used, even when its upload was deleted since.
		return false, sessionstore.ErrExists
	case now.After(d.ExpiresAt):
		return false, sessionstore.ErrDirectExpired
	}
	return false, nil
}

// RevokeDirectUpload marks the grant revoked and drops its waiting asset.
func (l *Store) RevokeDirectUpload(ctx context.Context, id string) (sessionstore.DirectUpload, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.DirectUpload{}, err
	}
	var d sessionstore.DirectUpload
	err := l.update("revoke direct upload", func(tx *bbolt.Tx) error {
		var err error
		if d, err = boltDirect(tx, id); err != nil {
			return err
		}
		if d.Revoked {
			return nil
		}
		d.Revoked = true
		if !d.Created {
			a, err := boltAsset(tx, id)
			if err == nil {
				a.Deleted = true
				err = boltPut(tx.Bucket(boltBucketAssets), []byte(id), a)
			}
			if err != nil && !errors.Is(err, sessionstore.ErrNotFound) {
				return err
			}
		}
		return boltPut(tx.Bucket(boltBucketDirect), []byte(id), d)
	})
	return d, err
}
