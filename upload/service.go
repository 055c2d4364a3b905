package upload

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
)

// Store is what the service needs of the session store.
type Store interface {
	LeaseStore
	Session(ctx context.Context, id string) (sessionstore.Session, error)
	OffsetSession(ctx context.Context, id string) (sessionstore.Session, error)
	Parts(ctx context.Context, id string) ([]sessionstore.Part, error)
	SetLength(ctx context.Context, id string, length int64) error
	Commit(ctx context.Context, l sessionstore.Lease, c sessionstore.Commit) (sessionstore.Session, error)
	ReserveQuota(ctx context.Context, account, uploadID string, bytes int64, defaults sessionstore.QuotaLimits) error
	SettleQuota(ctx context.Context, account, uploadID string, size int64) error
	ReleaseQuota(ctx context.Context, account, uploadID string) error
	TouchQuota(ctx context.Context, account, uploadID string) error
	QuotaHolds(ctx context.Context, before time.Time, limit int) ([]sessionstore.QuotaHold, error)
	Asset(ctx context.Context, id string) (sessionstore.Asset, error)
	DeleteUpload(ctx context.Context, id string) (sessionstore.Session, error)
	DeleteUploadLeased(ctx context.Context, l sessionstore.Lease) (sessionstore.Session, error)
	Expired(ctx context.Context, now time.Time, limit int) ([]sessionstore.Session, error)
	CreateUpload(ctx context.Context, sess sessionstore.Session, a sessionstore.Asset) error
	CreateReserved(ctx context.Context, c sessionstore.Creation) error
	ClaimDirectUpload(ctx context.Context, id, claim string, now time.Time, sess sessionstore.Session, a sessionstore.Asset) error
}

// Config is the service's part of the server's configuration.
type Config struct {
	// LeaseTTL is how long a write's lease lives without renewal.
	LeaseTTL time.Duration
	// TakeoverWait is how long a request waits for the holder of its
	// upload to let go.
	TakeoverWait time.Duration
	// UploadExpiry is how long an upload may sit idle before it expires:
	// every commit slides its expiry to that long from now.
	UploadExpiry time.Duration
	// QuotaDefaults are the quotas of accounts without limits of their
	// own.
	QuotaDefaults sessionstore.QuotaLimits
}

// Events queues the webhook events of the uploads' changes.
type Events interface {
	// EmitBefore queues an event of type typ about a before the change
	// it reports, to be verified at delivery: the change is made only
	// when this succeeded.
	EmitBefore(ctx context.Context, typ string, a sessionstore.Asset) error
}

// Telemetry is told what the service does (the server's metrics and
// traces).
type Telemetry interface {
	Observer
	// WithUpload marks ctx as about upload id of account, for the
	// attributes of the spans below it.
	WithUpload(ctx context.Context, id, account string) context.Context
	// Span starts a span named name under ctx; end ends it with its
	// outcome.
	Span(ctx context.Context, name string) (_ context.Context, end func(error))
	// Writing: a write starts (+1) or ended (-1) streaming into storage.
	Writing(delta int)
	// Wrote: a write streamed for d, its request body having given n
	// bytes so far.
	Wrote(d time.Duration, n int64)
	// WriteFailed: a write failed with err; cut says a newer request cut
	// its body.
	WriteFailed(err error, cut bool)
	// Committed: a commit took d and failed with err (nil: applied).
	Committed(d time.Duration, err error)
	// Created: an upload was created.
	Created()
	// Completed: an upload completed.
	Completed()
	// Deleted: a DELETE terminated an upload.
	Deleted()
	// Expired: the janitor freed an expired upload.
	Expired()
}

// Deps are what the service works with.
type Deps struct {
	Store  Store
	Pipe   *pipeline.Pipeline
	Events Events
	Tel    Telemetry
	Log    *slog.Logger
	// Describe is the pipeline's view of an upload (its content type
	// comes from the metadata the front door validated at creation).
	Describe func(sessionstore.Session) pipeline.Upload
}

// Service is the upload domain of one node: appends, completion and
// offset retrieval's takeover, over the session store and the pipeline.
type Service struct {
	Deps
	cfg    Config
	leases *Leases
}

// New returns the service of a node.
func New(cfg Config, d Deps) *Service {
	return &Service{Deps: d, cfg: cfg,
		leases: NewLeases(d.Store, LeaseConfig{TTL: cfg.LeaseTTL, TakeoverWait: cfg.TakeoverWait}, d.Log, d.Tel)}
}

// Leases are the node's leases and takeovers.
func (s *Service) Leases() *Leases { return s.leases }

// StorageToCreate is the Storage of an upload whose storage does not
// exist yet: a claimed direct upload, or any upload created on a sink
// that can put a whole upload at once (Create). No sink ever sees it
// (Describe hides it); a commit of the sink's state replaces it.
var StorageToCreate = []byte("roughy: storage to create")

// StoragePending reports whether sess is an upload still without storage (no byte can have been written to it).
func StoragePending(sess sessionstore.Session) bool {
	return sess.Offset == 0 && bytes.Equal(sess.Storage, StorageToCreate)
}

// nextExpiry is when an upload written to now expires: expiry
// (Config.UploadExpiry) after its last commit.
func nextExpiry(expiry time.Duration) time.Time { return time.Now().UTC().Add(expiry) }

// deletedUnder reports whether upload id is gone (a write lost its lease:
// was it to a DELETE?).
func deletedUnder(ctx context.Context, st Store, id string) bool {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := st.Session(cctx, id)
	return errors.Is(err, sessionstore.ErrNotFound)
}

// freeLate frees the storage of an upload deleted while this node wrote to
// it, once the write ended. The DELETE (or the janitor) frees the storage
// before it deletes the session; when it did not wait for the write to let
// go (the takeover wait ran out: the write's parts were still in flight,
// and the sink lets a part whose body went out whole finish), a part or
// tail that landed after that left a multipart upload or an object
// behind. Write returns only once its parts settled, so freeing again now
// catches them all; the session being gone proves the delete (and so its
// own freeing) happened, so nothing that still exists is freed.
func (s *Service) freeLate(ctx context.Context, sess sessionstore.Session) {
	if !deletedUnder(ctx, s.Store, sess.ID) {
		// Not deleted yet: the DELETE waits for this write's lease and
		// frees the storage after it.
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := s.Pipe.Sink().Abort(cctx, s.Describe(sess)); err != nil {
		s.Log.Warn("free storage written after a delete", "upload_id", sess.ID, "err", err)
	}
}
