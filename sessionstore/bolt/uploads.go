package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/roughy/ingest/sessionstore"
)

// CreateUpload stores a new session and, when a.ID is set, its asset.
func (l *Store) CreateUpload(ctx context.Context, s sessionstore.Session, a sessionstore.Asset) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.NextPart < 1 {
		s.NextPart = 1
	}
	return l.update("create upload", func(tx *bbolt.Tx) error { return boltCreateUpload(tx, s, a) })
}

// CreateReserved queues c's event, reserves its quota and stores the
// upload in one transaction (shared with concurrent writers: one fsync).
func (l *Store) CreateReserved(ctx context.Context, c sessionstore.Creation) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s := c.Session
	if s.NextPart < 1 {
		s.NextPart = 1
	}
	var refused error
	queued := 0
	err := l.update("create upload", func(tx *bbolt.Tx) error {
		// Both are set on every run: the function may run more than once.
		queued = 0
		refused = boltReserveQuota(tx, s.Account, s.ID, c.Reserve, c.Defaults)
		if refused != nil {
			return refused
		}
		if err := boltCreateUpload(tx, s, c.Asset); err != nil {
			return err
		}
		if c.Event == nil {
			return nil
		}
		var err error
		queued, err = l.enqueueTx(tx, s.Account, *c.Event)
		return err
	})
	if _, ok := errors.AsType[*sessionstore.QuotaError](refused); ok {
		return refused
	}
	if err == nil && queued > 0 {
		l.hooks.wake()
	}
	return err
}

// boltCreateUpload is CreateUpload inside tx.
func boltCreateUpload(tx *bbolt.Tx, s sessionstore.Session, a sessionstore.Asset) error {
	sessions, assets := tx.Bucket(boltBucketSessions), tx.Bucket(boltBucketAssets)
	if sessions.Get([]byte(s.ID)) != nil {
		return fmt.Errorf("session %s: %w", s.ID, sessionstore.ErrExists)
	}
	if a.ID != "" {
		if assets.Get([]byte(a.ID)) != nil {
			return fmt.Errorf("asset %s: %w", a.ID, sessionstore.ErrExists)
		}
		if err := boltPut(assets, []byte(a.ID), a); err != nil {
			return err
		}
	}
	if !s.Completed {
		if err := tx.Bucket(boltBucketExpiry).Put(boltExpiryKey(s), nil); err != nil {
			return err
		}
	}
	return boltPut(sessions, []byte(s.ID), s)
}

// Session returns a session; ErrNotFound when unknown or deleted.
func (l *Store) Session(ctx context.Context, id string) (sessionstore.Session, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.Session{}, err
	}
	var s sessionstore.Session
	err := l.view("session", func(tx *bbolt.Tx) error {
		var err error
		s, err = boltSession(tx, id)
		return err
	})
	if err == nil {
		l.mu.Lock()
		cur, ok := l.leases[id]
		s.Leased = ok && (cur.pending || time.Now().Before(cur.expires))
		s.HeadFence = l.heads.fence(id)
		l.mu.Unlock()
	}
	return s, err
}

// Parts returns the committed parts in commit order.
func (l *Store) Parts(ctx context.Context, id string) ([]sessionstore.Part, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var parts []sessionstore.Part
	err := l.view("parts", func(tx *bbolt.Tx) error {
		if tx.Bucket(boltBucketSessions).Get([]byte(id)) == nil {
			return sessionstore.ErrNotFound
		}
		b := tx.Bucket(boltBucketParts).Bucket([]byte(id))
		if b == nil {
			return nil
		}
		var err error
		parts, err = boltList[sessionstore.Part](b)
		return err
	})
	return parts, err
}

// SetLength sets a deferred Upload-Length once, and the asset's size.
func (l *Store) SetLength(ctx context.Context, id string, length int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.update("set length", func(tx *bbolt.Tx) error {
		s, err := boltSession(tx, id)
		if err != nil {
			return err
		}
		switch {
		case s.Length >= 0 && s.Length == length:
			return nil
		case s.Length >= 0:
			return fmt.Errorf("length already %d, not %d: %w", s.Length, length, sessionstore.ErrOffsetConflict)
		case length < s.Offset:
			return fmt.Errorf("length %d below offset %d: %w", length, s.Offset, sessionstore.ErrOffsetConflict)
		}
		s.Length = length
		if err := boltSetAssetSize(tx, s.AssetID, length); err != nil {
			return err
		}
		return boltPut(tx.Bucket(boltBucketSessions), []byte(id), s)
	})
}

// boltSetAssetSize records a now-known length on the asset, if there is one.
func boltSetAssetSize(tx *bbolt.Tx, assetID string, size int64) error {
	a, err := boltAsset(tx, assetID)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	a.SizeBytes = size
	return boltPut(tx.Bucket(boltBucketAssets), []byte(a.ID), a)
}

// Commit applies c in one transaction if ls is current and the stored
// offset is c.ExpectOffset. A Complete commit makes the asset ready and
// enqueues its probe job in the same transaction.
func (l *Store) Commit(ctx context.Context, ls sessionstore.Lease, c sessionstore.Commit) (sessionstore.Session, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.Session{}, err
	}
	var s sessionstore.Session
	var enqueued bool
	queued := 0
	err := l.update("commit", func(tx *bbolt.Tx) error {
		// All are set on every run: the function may run more than once.
		var err error
		queued = 0
		s, enqueued, err = l.commitTx(tx, ls, c)
		if err != nil || c.Event == nil {
			return err
		}
		queued, err = l.enqueueTx(tx, s.Account, *c.Event)
		return err
	})
	if err != nil {
		return sessionstore.Session{}, err
	}
	if queued > 0 {
		l.hooks.wake()
	}
	if c.ExtendLease > 0 {
		l.mu.Lock()
		if cur, ok := l.leases[ls.SessionID]; ok && cur.token == ls.Token {
			cur.expires = time.Now().Add(c.ExtendLease)
			l.leases[ls.SessionID] = cur
		}
		l.mu.Unlock()
	}
	if enqueued {
		l.wake()
	}
	return s, nil
}

// commitTx is Commit inside tx: it returns the session as written and
// whether a probe job was enqueued.
func (l *Store) commitTx(tx *bbolt.Tx, ls sessionstore.Lease, c sessionstore.Commit) (sessionstore.Session, bool, error) {
	// Checked inside the write transaction: bbolt serialises writers,
	// so no other commit of this upload runs between check and write.
	l.mu.Lock()
	held := l.holds(ls)
	l.mu.Unlock()
	if !held {
		return sessionstore.Session{}, false, fmt.Errorf("upload %s token %d: %w", ls.SessionID, ls.Token, sessionstore.ErrLeaseLost)
	}
	s, err := boltSession(tx, ls.SessionID)
	if err != nil {
		return s, false, err
	}
	if err := localCheckCommit(s, c); err != nil {
		return s, false, err
	}
	if err := boltCommitProgress(tx, &s, c); err != nil {
		return s, false, err
	}
	if err := boltCommitExpiry(tx, &s, c); err != nil {
		return s, false, err
	}
	enqueued := false
	if c.Complete {
		if enqueued, err = boltCommitComplete(tx, l.probes, &s, c); err != nil {
			return s, false, err
		}
		if c.Settle {
			if err := boltSettleQuota(tx, s.Account, s.ID, s.Offset); err != nil {
				return s, false, err
			}
		}
	}
	return s, enqueued, boltPut(tx.Bucket(boltBucketSessions), []byte(s.ID), s)
}

// boltCommitProgress applies c's length, offset, hash state, storage and
// (unless it completes) parts to *s.
func boltCommitProgress(tx *bbolt.Tx, s *sessionstore.Session, c sessionstore.Commit) error {
	if c.Length >= 0 && s.Length < 0 {
		s.Length = c.Length
		if err := boltSetAssetSize(tx, s.AssetID, c.Length); err != nil {
			return err
		}
	}
	s.Offset, s.HashState = c.NewOffset, c.HashState
	if c.Storage != nil {
		s.Storage = c.Storage
	}
	if len(c.Parts) > 0 && !c.Complete {
		return boltAppendParts(tx, s.ID, c.Parts)
	}
	return nil
}

// boltCommitExpiry sets c's new expiry on *s and moves the index entry
// with it; a completing upload leaves the index.
func boltCommitExpiry(tx *bbolt.Tx, s *sessionstore.Session, c sessionstore.Commit) error {
	if c.ExpiresAt.IsZero() || c.ExpiresAt.Equal(s.ExpiresAt) {
		return nil
	}
	expiry := tx.Bucket(boltBucketExpiry)
	if err := expiry.Delete(boltExpiryKey(*s)); err != nil {
		return err
	}
	s.ExpiresAt = c.ExpiresAt
	if c.Complete {
		return nil
	}
	return expiry.Put(boltExpiryKey(*s), nil)
}

// boltCommitComplete marks *s completed, drops it from the expiry index
// and its parts, and makes its asset ready; true when a probe job was
// enqueued.
func boltCommitComplete(tx *bbolt.Tx, probes *jobQueue, s *sessionstore.Session, c sessionstore.Commit) (bool, error) {
	if s.Length < 0 {
		s.Length = c.NewOffset
	}
	s.Completed = true
	if err := tx.Bucket(boltBucketExpiry).Delete(boltExpiryKey(*s)); err != nil {
		return false, err
	}
	// The final object is built: its parts are not needed anymore.
	if err := boltDeleteParts(tx, s.ID); err != nil {
		return false, err
	}
	return boltCompleteAsset(tx, probes, s.AssetID, c)
}

// localCheckCommit refuses a commit that does not apply to s.
func localCheckCommit(s sessionstore.Session, c sessionstore.Commit) error {
	switch {
	case s.Offset != c.ExpectOffset:
		return fmt.Errorf("offset %d, commit expects %d: %w", s.Offset, c.ExpectOffset, sessionstore.ErrOffsetConflict)
	case s.Completed:
		return fmt.Errorf("upload already completed: %w", sessionstore.ErrOffsetConflict)
	case c.NewOffset < 0, c.NewOffset < c.ExpectOffset && (!c.Rewind || c.Complete):
		return fmt.Errorf("new offset %d below %d: %w", c.NewOffset, c.ExpectOffset, sessionstore.ErrOffsetConflict)
	}
	length := s.Length
	switch {
	case length < 0:
		length = c.Length
	case c.Length >= 0 && c.Length != length:
		return fmt.Errorf("length already %d, commit sets %d: %w", length, c.Length, sessionstore.ErrOffsetConflict)
	}
	switch {
	case length >= 0 && c.NewOffset > length:
		return fmt.Errorf("new offset %d past length %d: %w", c.NewOffset, length, sessionstore.ErrOffsetConflict)
	case c.Complete && length >= 0 && c.NewOffset != length:
		return fmt.Errorf("complete at %d, length %d: %w", c.NewOffset, length, sessionstore.ErrOffsetConflict)
	}
	return nil
}

func boltAppendParts(tx *bbolt.Tx, id string, parts []sessionstore.Part) error {
	b, err := tx.Bucket(boltBucketParts).CreateBucketIfNotExists([]byte(id))
	if err != nil {
		return err
	}
	for _, p := range parts {
		if err := boltAppend(b, p); err != nil {
			return err
		}
	}
	return nil
}

// boltDeleteParts drops an upload's committed parts, if it has any.
func boltDeleteParts(tx *bbolt.Tx, id string) error {
	parts := tx.Bucket(boltBucketParts)
	if parts.Bucket([]byte(id)) == nil {
		return nil
	}
	return parts.DeleteBucket([]byte(id))
}

// boltCompleteAsset makes the asset ready and enqueues its probe job; false
// when the session has no asset (a concatenation partial).
func boltCompleteAsset(tx *bbolt.Tx, probes *jobQueue, assetID string, c sessionstore.Commit) (bool, error) {
	a, err := boltAsset(tx, assetID)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	a.State, a.SHA256, a.SizeBytes = sessionstore.StateReady, c.SHA256, c.NewOffset
	if err := boltPut(tx.Bucket(boltBucketAssets), []byte(a.ID), a); err != nil {
		return false, err
	}
	return true, probes.put(tx, time.Now(), localProbeRecord{AssetID: a.ID})
}

// DeleteUpload removes a session and its parts and soft-deletes its asset.
func (l *Store) DeleteUpload(ctx context.Context, id string) (sessionstore.Session, error) {
	return l.deleteUpload(ctx, id, nil)
}

// DeleteUploadLeased deletes the upload while ls is its current lease.
func (l *Store) DeleteUploadLeased(ctx context.Context, ls sessionstore.Lease) (sessionstore.Session, error) {
	return l.deleteUpload(ctx, ls.SessionID, &ls)
}

// deleteUpload deletes upload id, if ls is nil or still the current lease.
func (l *Store) deleteUpload(ctx context.Context, id string, ls *sessionstore.Lease) (sessionstore.Session, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.Session{}, err
	}
	var s sessionstore.Session
	err := l.update("delete upload", func(tx *bbolt.Tx) error {
		var err error
		if s, err = boltSession(tx, id); err != nil {
			return err
		}
		if ls != nil {
			// Checked inside the write transaction, as Commit does: no
			// commit of the upload runs between check and delete.
			l.mu.Lock()
			held := l.holds(*ls)
			l.mu.Unlock()
			if !held {
				return fmt.Errorf("upload %s token %d: %w", id, ls.Token, sessionstore.ErrLeaseLost)
			}
		}
		if err := tx.Bucket(boltBucketSessions).Delete([]byte(id)); err != nil {
			return err
		}
		if err := tx.Bucket(boltBucketExpiry).Delete(boltExpiryKey(s)); err != nil {
			return err
		}
		if err := boltDeleteParts(tx, id); err != nil {
			return err
		}
		a, err := boltAsset(tx, s.AssetID)
		if errors.Is(err, sessionstore.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		a.Deleted = true
		return boltPut(tx.Bucket(boltBucketAssets), []byte(a.ID), a)
	})
	if err != nil {
		return sessionstore.Session{}, err
	}
	l.mu.Lock()
	delete(l.leases, id)
	l.heads.forget(id)
	l.mu.Unlock()
	return s, nil
}

// Expired lists up to limit uncompleted sessions whose ExpiresAt is before
// now, oldest first.
func (l *Store) Expired(ctx context.Context, now time.Time, limit int) ([]sessionstore.Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []sessionstore.Session
	before := boltUnixNano(now)
	err := l.view("expired", func(tx *bbolt.Tx) error {
		c := tx.Bucket(boltBucketExpiry).Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			if len(k) < 8 || binary.BigEndian.Uint64(k[:8]) >= before {
				break
			}
			s, err := boltSession(tx, string(k[8:]))
			if errors.Is(err, sessionstore.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if !s.Completed {
				out = append(out, s)
			}
		}
		return nil
	})
	return out, err
}

// Asset returns an asset; ErrNotFound when unknown or deleted.
func (l *Store) Asset(ctx context.Context, id string) (sessionstore.Asset, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.Asset{}, err
	}
	var a sessionstore.Asset
	err := l.view("asset", func(tx *bbolt.Tx) error {
		var err error
		a, err = boltAsset(tx, id)
		return err
	})
	return a, err
}
