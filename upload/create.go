package upload

import (
	"context"
	"fmt"

	"github.com/roughy/ingest/sessionstore"
)

// Create stores a new upload sess with its asset (a.ID "": a
// concatenation partial, which has no visible asset). Its asset.created
// event is queued before anything else (a refusal after it leaves an
// event that is never delivered), its quota reserved next (a refusal
// leaves nothing), then its storage is made and the session stored; a
// failure after the reservation gives it back and frees the storage.
// sess.Storage is the sink's state on return.
func (s *Service) Create(ctx context.Context, sess *sessionstore.Session, a sessionstore.Asset) error {
	if a.ID != "" {
		if err := s.Events.EmitBefore(ctx, sessionstore.EventAssetCreated, a); err != nil {
			return err
		}
	}
	if err := s.ReserveQuota(ctx, sess.Account, sess.ID, max(sess.Length, 0)); err != nil {
		return err
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
