package upload

import (
	"context"
	"errors"
	"fmt"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
)

// Create stores a new upload sess with its asset (a.ID "": a
// concatenation partial, which has no visible asset). Its storage is made
// first, then its asset.created event is queued, its quota reserved and
// the session stored, all in one store write (Store.CreateReserved): a
// refusal (quota, a taken id) changes nothing in the store and frees the
// storage. sess.Storage is the sink's state on return. With a sink that
// can store a whole upload with one request (pipeline.Putter: S3), no
// storage is made: the session is stored with StorageToCreate, and its
// first write either puts the whole upload or makes the storage
// (EnsureStorage).
func (s *Service) Create(ctx context.Context, sess *sessionstore.Session, a sessionstore.Asset) error {
	_, lazy := s.Pipe.Sink().(pipeline.Putter)
	return s.create(ctx, sess, a, lazy)
}

// create is Create, making the storage now unless lazy.
func (s *Service) create(ctx context.Context, sess *sessionstore.Session, a sessionstore.Asset, lazy bool) error {
	c := sessionstore.Creation{Asset: a, Reserve: max(sess.Length, 0), Defaults: s.cfg.QuotaDefaults}
	if a.ID != "" {
		ev, err := eventBefore(ctx, s.Events, sessionstore.EventAssetCreated, a)
		if err != nil {
			return err
		}
		c.Event = ev
	}
	if lazy {
		sess.Storage = StorageToCreate
		c.Session = *sess
		if err := s.Store.CreateReserved(ctx, c); err != nil {
			return createErr(err)
		}
		s.Tel.Created()
		return nil
	}
	u := s.Describe(*sess)
	storage, err := s.Pipe.Sink().Create(ctx, u)
	if err != nil {
		return fmt.Errorf("upload: create storage: %w", err)
	}
	sess.Storage = storage
	c.Session = *sess
	if err := s.Store.CreateReserved(ctx, c); err != nil {
		u.Storage = storage
		if aerr := s.Pipe.Sink().Abort(context.WithoutCancel(ctx), u); aerr != nil {
			s.Log.Warn("free storage of failed creation", "upload_id", sess.ID, "err", aerr)
		}
		return createErr(err)
	}
	s.Tel.Created()
	return nil
}

// createErr is a failed CreateReserved as Create answers it: a quota
// refusal as it is (it names the limit).
func createErr(err error) error {
	if _, ok := errors.AsType[*sessionstore.QuotaError](err); ok {
		return err
	}
	return fmt.Errorf("upload: create upload: %w", err)
}

// EventMaker is Events that queue into the session store itself
// (StoreEvents): the service hands the event to the store write that
// makes the change it reports, instead of queueing it with a write of
// its own first.
type EventMaker interface {
	// Before returns the event EmitBefore would queue, false when it
	// queues none.
	Before(typ string, a sessionstore.Asset) (sessionstore.WebhookEvent, bool)
}

// eventBefore returns the event of type typ about a for the store write
// of the change to queue, or queues it now (EmitBefore) when the Events
// cannot hand it over (nil then).
func eventBefore(ctx context.Context, events Events, typ string, a sessionstore.Asset) (*sessionstore.WebhookEvent, error) {
	if m, ok := events.(EventMaker); ok {
		ev, ok := m.Before(typ, a)
		if !ok {
			return nil, nil
		}
		return &ev, nil
	}
	return nil, events.EmitBefore(ctx, typ, a)
}
