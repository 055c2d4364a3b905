package upload

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
)

// Delete terminates account's upload id: its stored bytes are freed and
// its asset soft-deleted (asset.deleted queued before). An upload that
// is already gone, or another account's, is no error and changes
// nothing, but what the account still holds of its quota for it is
// released (a DELETE retried after a node died between deleting and
// releasing).
func (s *Service) Delete(ctx context.Context, account, id string) error {
	sess, err := s.Own(ctx, account, id)
	switch {
	case errors.Is(err, sessionstore.ErrNotFound):
		s.ReleaseQuota(ctx, account, id)
		return nil
	case err != nil:
		return fmt.Errorf("upload: load session: %w", err)
	}
	// A write in flight lets go first (Leases): it stops reading and
	// answers ErrDeleted, and nothing more is stored after the storage is
	// freed. If it does not let go in time, the DELETE goes on anyway:
	// deleting the session drops its lease, so the write commits nothing
	// more.
	l, err := s.leases.Take(ctx, id, 0, true, NoFence)
	switch {
	case err == nil:
		// The write may have stored more (a new tail object) meanwhile.
		sess = l.Session
	case errors.Is(err, sessionstore.ErrNotFound):
		return nil
	case !errors.Is(err, sessionstore.ErrLocked):
		return fmt.Errorf("upload: take lease to delete: %w", err)
	}
	if l.Token != 0 {
		// Held (renewed, and known to release requests as this node's:
		// never dropped as an orphan) until the DELETE ends; a DELETE that
		// fails half way lets go of it, so that its retry (or a resume)
		// finds the upload free. One that succeeds drops it with the
		// session.
		_, hctx, release := s.leases.Hold(ctx, l)
		defer release()
		ctx = hctx
	}
	if err := s.free(ctx, sess, l); err != nil {
		return err
	}
	s.ReleaseQuota(ctx, account, id)
	s.Tel.Deleted()
	return nil
}

// free frees the storage of sess and deletes it, under lease l (Token
// 0: a write still holds the upload).
func (s *Service) free(ctx context.Context, sess sessionstore.Session, l sessionstore.Lease) error {
	// Storage first: if the store then fails, a retried DELETE still finds
	// the session and frees nothing twice (Abort is idempotent).
	if err := s.Pipe.Sink().Abort(ctx, s.Describe(sess)); err != nil {
		return fmt.Errorf("upload: free storage: %w", leaseCause(ctx, err))
	}
	// With the lease, the session is deleted only while it is still this
	// DELETE's: one lost during a slow abort may have let a newer append
	// commit (ErrLeaseLost: the retry starts over).
	if err := s.remove(ctx, sess, sessionstore.EventAssetDeleted, l); err != nil && !errors.Is(err, sessionstore.ErrNotFound) {
		return fmt.Errorf("upload: delete upload: %w", leaseCause(ctx, err))
	}
	if l.Token == 0 {
		// The write did not let go in time, and may have had a part in
		// flight: one that landed between the abort above and the delete
		// is freed now; the write itself frees any that lands later, once
		// it finds the session gone (Append).
		if err := s.Pipe.Sink().Abort(ctx, s.Describe(sess)); err != nil {
			s.Log.Warn("free storage again after a delete", "upload_id", sess.ID, "err", err)
		}
	}
	return nil
}

// remove deletes an upload from the store, with typ about its asset as
// it stands before (once deleted, the store no longer shows it) queued
// first. With a lease (Token != 0) the delete happens only while it is
// still the upload's lease (ErrLeaseLost otherwise): a request that took
// the upload since may have committed to it.
func (s *Service) remove(ctx context.Context, sess sessionstore.Session, typ string, l sessionstore.Lease) error {
	var a sessionstore.Asset
	if sess.AssetID != "" {
		var err error
		if a, err = s.Store.Asset(ctx, sess.AssetID); err != nil && !errors.Is(err, sessionstore.ErrNotFound) {
			return fmt.Errorf("upload: load asset to delete: %w", err)
		}
	}
	if a.ID != "" {
		// A concatenation partial has no asset to tell about.
		if err := s.Events.EmitBefore(ctx, typ, a); err != nil {
			return err
		}
	}
	var err error
	if l.Token != 0 {
		_, err = s.Store.DeleteUploadLeased(ctx, l)
	} else {
		_, err = s.Store.DeleteUpload(ctx, sess.ID)
	}
	return err
}

// leaseCause is err, or why Hold canceled ctx when it did (the lease was
// lost: a retryable ErrLeaseLost rather than a canceled request).
func leaseCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return fmt.Errorf("%w (%w)", cause, err)
	}
	return err
}

// ReleaseQuota drops what upload id holds of its account's quota
// (deleted, expired, or its creation failed). A failure is logged: the
// janitor releases a hold whose upload is gone later.
func (s *Service) ReleaseQuota(ctx context.Context, account, id string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), quotaCleanupTimeout)
	defer cancel()
	if err := s.Store.ReleaseQuota(cctx, account, id); err != nil {
		s.Log.Warn("quota: release", "upload_id", id, "account", account, "err", err)
	}
}

// Refusals of a representation digest (the draft's Repr-Digest).
var (
	// ErrReprMismatch: the upload's SHA-256 is not the digest the request
	// gave; the request stored nothing, and the upload resumes as it was.
	ErrReprMismatch = errors.New("upload: the representation digest does not match")
	// ErrReprFailed: the digest does not match bytes the request already
	// stored: the upload cannot be repaired, so it failed and was deleted.
	ErrReprFailed = errors.New("upload: the representation digest does not match stored bytes; the upload was deleted")
)

// CheckRepr verifies the SHA-256 a request that ends upload sess gave
// for the whole upload (repr), when the pipeline did not (its length was
// unknown while the content streamed, or the request had none); sess has
// all its bytes stored. moved says this request stored some of them: a
// mismatch then deletes the upload (ErrReprFailed), else it leaves it as
// it was (ErrReprMismatch).
func (s *Service) CheckRepr(ctx context.Context, sess sessionstore.Session, repr []byte, moved bool) error {
	got, err := pipeline.SumHex(sess.HashState)
	if err != nil {
		return fmt.Errorf("upload: upload sha256: %w", err)
	}
	if got == hex.EncodeToString(repr) {
		return nil
	}
	if !moved {
		return ErrReprMismatch
	}
	if err := s.Delete(ctx, sess.Account, sess.ID); err != nil {
		return err
	}
	return ErrReprFailed
}
