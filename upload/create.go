package upload

import (
	"context"
	"fmt"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
)

// Create stores a new upload sess with its asset (a.ID "": a
// concatenation partial, which has no visible asset). Its asset.created
// event is queued before anything else (a refusal after it leaves an
// event that is never delivered), its quota reserved next (a refusal
// leaves nothing), then its storage is made and the session stored; a
// failure after the reservation gives it back and frees the storage.
// sess.Storage is the sink's state on return. With a sink that can store
// a whole upload with one request (pipeline.Putter: S3), no storage is
// made: the session is stored with StorageToCreate, and its first write
// either puts the whole upload or makes the storage (EnsureStorage).
func (s *Service) Create(ctx context.Context, sess *sessionstore.Session, a sessionstore.Asset) error {
	_, lazy := s.Pipe.Sink().(pipeline.Putter)
	return s.create(ctx, sess, a, lazy)
}

// create is Create, making the storage now unless lazy.
func (s *Service) create(ctx context.Context, sess *sessionstore.Session, a sessionstore.Asset, lazy bool) error {
	if a.ID != "" {
		if err := s.Events.EmitBefore(ctx, sessionstore.EventAssetCreated, a); err != nil {
			return err
		}
	}
	if err := s.ReserveQuota(ctx, sess.Account, sess.ID, max(sess.Length, 0)); err != nil {
		return err
	}
	if lazy {
		sess.Storage = StorageToCreate
		if err := s.Store.CreateUpload(ctx, *sess, a); err != nil {
			s.ReleaseQuota(ctx, sess.Account, sess.ID)
			return fmt.Errorf("upload: create upload: %w", err)
		}
		s.Tel.Created()
		return nil
	}
	u := s.Describe(*sess)
	storage, err := s.Pipe.Sink().Create(ctx, u)
	if err != nil {
		s.ReleaseQuota(ctx, sess.Account, sess.ID)
		return fmt.Errorf("upload: create storage: %w", err)
	}
	sess.Storage = storage
	if err := s.Store.CreateUpload(ctx, *sess, a); err != nil {
		s.ReleaseQuota(ctx, sess.Account, sess.ID)
		u.Storage = storage
		if aerr := s.Pipe.Sink().Abort(context.WithoutCancel(ctx), u); aerr != nil {
			s.Log.Warn("free storage of failed creation", "upload_id", sess.ID, "err", aerr)
		}
		return fmt.Errorf("upload: create upload: %w", err)
	}
	s.Tel.Created()
	return nil
}
