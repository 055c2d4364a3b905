// Package sessionstore holds the domain types of session state (uploads
// and their leases, assets, API keys, webhooks, direct uploads, quotas,
// queued jobs) and the Store interface the rest of Roughy uses. The
// backends live in their own packages and share one behaviour suite
// (sessionstore/storetest): sessionstore/bolt, an embedded durable store
// for one node, and sessionstore/redis, for a fleet of nodes.
//
// Every state change that must be atomic is one call here: a commit names
// the offset it expects and the lease it holds, and fails with
// ErrOffsetConflict or ErrLeaseLost instead of overwriting newer state.
package sessionstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/roughy/ingest/pipeline"
)

// Errors returned by every Store implementation. Foreign errors (bbolt,
// Redis) are mapped to these at the boundary; callers use errors.Is.
var (
	// ErrNotFound: no such session, asset, key or job (or it was deleted).
	ErrNotFound = errors.New("sessionstore: not found")
	// ErrExists: an id that must be new is taken.
	ErrExists = errors.New("sessionstore: already exists")
	// ErrOffsetConflict: a commit's expected offset is not the stored one.
	ErrOffsetConflict = errors.New("sessionstore: offset conflict")
	// ErrLocked: another live request holds the upload's lease. AcquireLease
	// returns it as a *LockedError, which names the holder.
	ErrLocked = errors.New("sessionstore: upload is locked by another request")
	// ErrLeaseLost: the caller's lease expired or was taken over; it must
	// not commit anything more.
	ErrLeaseLost = errors.New("sessionstore: lease lost")
	// ErrPartsExhausted: the upload has no S3 part numbers left to reserve.
	ErrPartsExhausted = errors.New("sessionstore: part numbers exhausted")
	// ErrUnavailable wraps backend failures (connection refused, timeouts):
	// the proxy answers 503 with Retry-After.
	ErrUnavailable = errors.New("sessionstore: backend unavailable")
	// ErrEmpty: no probe job is ready.
	ErrEmpty = errors.New("sessionstore: queue empty")
	// ErrDataLost: the backend no longer holds the data it held when the
	// store was opened (a Redis failover to an empty replica, FLUSHALL, a
	// restart without persistence). Ping reports it once per loss.
	ErrDataLost = errors.New("sessionstore: the store lost its data")
)

// ErrStorageFull: the embedded store's disk is full (ENOSPC, EDQUOT). It
// wraps ErrUnavailable: the transaction was rolled back, nothing changed.
var ErrStorageFull = fmt.Errorf("%w: no space left on the device", ErrUnavailable)

// Node liveness: a node refreshes its record every NodeRefresh; a record
// not refreshed for NodeTTL is dead, and the leases its node held are
// taken over by the next request (resumable within 3 s of a kill).
const (
	NodeTTL     = 3 * time.Second
	NodeRefresh = time.Second
)

// NewNodeID returns a random node id: a process that restarts is a new
// node, so a paused-then-resumed process is never mistaken for a live one.
func NewNodeID() string { return strings.ToLower(rand.Text()[:16]) }

// MaxPartNumber is S3's highest multipart part number.
const MaxPartNumber = 10000

// Session is one TUS upload.
type Session struct {
	ID      string
	Account string
	AssetID string
	// Length is the declared Upload-Length, -1 while deferred.
	Length int64
	// Offset counts bytes that are durable in storage.
	Offset int64
	// Metadata is the Upload-Metadata header as received (validated).
	Metadata string
	// Partial marks a concatenation partial (Upload-Concat: partial).
	Partial bool
	// ConcatOf lists the session ids of the partials of a final upload.
	ConcatOf []string
	// ConcatHeader is the Upload-Concat a final upload was created with,
	// as received (HEAD echoes it); "" for one stored before it was kept.
	ConcatHeader string
	// HashState is the marshaled SHA-256 state of bytes [0, Offset).
	HashState []byte
	// Storage is opaque state owned by the pipeline's sink (e.g. the S3
	// multipart upload id and the tail object), saved with every commit.
	Storage []byte
	// NextPart is the next unreserved S3 part number (starts at 1).
	NextPart int32
	// Completed is set by the final commit.
	Completed bool
	CreatedAt time.Time
	ExpiresAt time.Time
	// Leased reports that a request held the upload's lease (unexpired)
	// when Store.Session read it; other calls leave it false. It is read
	// in the same step as the session, so that offset retrieval can tell
	// a write in flight (whose bytes may still commit) without writing
	// to the store.
	Leased bool
}

// Part is one committed S3 multipart part: the pipeline's own type. The
// sink makes parts and completes the object from them; the store only
// keeps them, so it names the sink's type rather than a copy that every
// commit would convert to and back. The import runs this way because
// pipeline is the leaf of the graph (it imports nothing of this module):
// proxy -> sessionstore -> pipeline stays a line, while pipeline
// importing sessionstore would make the byte path depend on session state.
// The Checksum is opaque to the store.
type Part = pipeline.Part

// Asset states.
const (
	StateUploading = "uploading"
	StateReady     = "ready"
)

// Asset is what an upload becomes.
type Asset struct {
	ID          string
	Account     string
	SessionID   string
	Type        string // "video" or "audio"
	State       string
	SizeBytes   int64 // -1 while deferred
	ContentType string
	Filename    string
	// Metadata holds every Upload-Metadata pair (decoded), unknown keys too.
	Metadata map[string]string
	// DurationSeconds is "3782.413" once ffprobe ran, "" before or for
	// non-media.
	DurationSeconds string
	SHA256          string
	// StorageKey is the object key (S3) or path below the data dir (local).
	StorageKey string
	CreatedAt  time.Time
	Deleted    bool
}

// LockedError is AcquireLease's refusal: the upload's lease is held by a
// live request on node Holder. errors.Is(err, ErrLocked) holds for it.
type LockedError struct {
	SessionID string
	// Holder is the node id of the lease's holder ("" when the lease was
	// taken by a version that did not record it).
	Holder string
	// Token is the fencing token of the lease that refused: a release
	// request names it, so that the holder node can tell whether one of
	// its requests holds exactly that lease (see DropLease).
	Token int64
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("sessionstore: upload %s is locked by a request on node %q", e.SessionID, e.Holder)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// ReleaseRequest asks the node holding an upload's lease to let go of it:
// a newer request on the upload wants it.
type ReleaseRequest struct {
	SessionID string
	// Delete: the newer request is a DELETE (the writer that lets go
	// answers as for a deleted upload).
	Delete bool
	// Token is the fencing token of the lease the asker was refused by
	// (LockedError.Token); 0 when unknown.
	Token int64
}

// Lease is a request's exclusive right to write an upload. Token is a
// fencing token: it grows with every acquisition, and commits check it.
type Lease struct {
	SessionID string
	Token     int64
	// FirstPart..FirstPart+Parts-1 are S3 part numbers reserved for this
	// lease alone (Parts is 0 when none were asked for).
	FirstPart int32
	Parts     int32
	ExpiresAt time.Time
	// Holder is the node that took the lease (Store.Node of its store).
	Holder string
	// Session is the upload as it stood when the lease was taken (its
	// part reservation included): under the lease nobody else commits,
	// so the holder needs no second read. Only AcquireLease sets it.
	Session Session
}

// Commit advances an upload's offset. It is applied only when the stored
// offset equals ExpectOffset and the lease is still the upload's current one.
type Commit struct {
	ExpectOffset int64
	NewOffset    int64
	HashState    []byte
	// Storage replaces Session.Storage when non-nil.
	Storage []byte
	// Parts are appended to the upload's committed parts (a Complete
	// commit drops them all instead; see Store.Parts).
	Parts []Part
	// Length sets a deferred Upload-Length when >= 0 (ignored otherwise);
	// ErrOffsetConflict if the length is already set to another value.
	Length int64
	// Complete marks the upload done: the asset becomes ready with
	// SHA256 and SizeBytes = NewOffset, and a probe job is enqueued, all
	// in the same atomic step.
	Complete bool
	SHA256   string
	// ExpiresAt, when non-zero, replaces Session.ExpiresAt: an upload's
	// expiry slides with every commit, so one that is still being written
	// does not expire mid-way. Expired sees the new time at once.
	ExpiresAt time.Time
	// ExtendLease, when > 0, makes a commit that is applied also extend
	// the lease to ExtendLease from now, in the same step: a writer that
	// commits more often than it would renew needs no renewals.
	ExtendLease time.Duration
	// Rewind allows NewOffset below ExpectOffset (never with Complete): the
	// storage lost bytes it had acknowledged (an S3 tail object gone), and
	// the upload falls back to the last offset it still holds, so that the
	// client sends those bytes again instead of the upload failing for
	// good.
	Rewind bool
}

// Key is an API key; only its hash is stored.
type Key struct {
	ID        string
	Account   string
	Hash      string // hex SHA-256 of the secret
	Prefix    string // first characters, for display
	CreatedAt time.Time
	Revoked   bool
}

// ProbeJob is one queued ffprobe request.
type ProbeJob struct {
	ID       string // queue-specific message id
	AssetID  string
	Attempts int
}

// DeadProbe is a job that failed too often.
type DeadProbe struct {
	AssetID  string
	Attempts int
	Reason   string
}

// Store is everything the rest of Roughy needs from session state.
// bolt.Store and redis.Store implement it; storetest.Run checks both.
type Store interface {
	// CreateUpload stores a new session and its asset (state uploading).
	CreateUpload(ctx context.Context, s Session, a Asset) error
	// Session returns a session; ErrNotFound when unknown or deleted.
	Session(ctx context.Context, id string) (Session, error)
	// Parts returns the committed parts in part order of commit. A
	// completing commit drops them (the final object no longer needs
	// them; the session itself stays, for HEAD): after it, Parts answers
	// an empty list.
	Parts(ctx context.Context, id string) ([]Part, error)
	// SetLength sets a deferred Upload-Length once; ErrOffsetConflict if it
	// is already set to another value or below the offset.
	SetLength(ctx context.Context, id string, length int64) error

	// AcquireLease takes the upload's lease for ttl, reserving `parts` S3
	// part numbers, and records this node as its holder. A *LockedError
	// (ErrLocked) when another unexpired lease exists whose holder node is
	// live; a lease whose holder node is no longer live is taken over at
	// once, in the same atomic step. ErrPartsExhausted when the
	// reservation would pass MaxPartNumber.
	AcquireLease(ctx context.Context, id string, ttl time.Duration, parts int32) (Lease, error)
	// RenewLease extends a held lease; ErrLeaseLost if it is not current.
	RenewLease(ctx context.Context, l Lease, ttl time.Duration) (Lease, error)
	// ReleaseLease drops the lease if it is still current (no error if not).
	ReleaseLease(ctx context.Context, l Lease) error
	// DropLease drops the upload's lease if its token is token and its
	// holder is node (no error if not, or if there is none). A node uses
	// it on a lease of its own that no request of its holds: one whose
	// acquisition succeeded in the store while its answer was lost (a
	// Redis outage), which would otherwise block the upload for a TTL.
	// The token is the one a release request named: a lease the node took
	// since (a request that does hold the upload) is never dropped.
	DropLease(ctx context.Context, id, node string, token int64) error
	// Node is this process's id in the fleet: the holder recorded in the
	// leases it takes. The store keeps the node's liveness record fresh
	// until Close (Redis: a key with a TTL of NodeTTL, refreshed every
	// NodeRefresh; embedded: the process itself).
	Node() string
	// RequestRelease sends r to node holder (best effort: a lost request
	// is sent again by the asker, who polls the lease meanwhile).
	RequestRelease(ctx context.Context, holder string, r ReleaseRequest) error
	// WatchReleases delivers release requests addressed to this node to
	// fn, one at a time, until stop is called. It returns once the
	// subscription is live, so a request sent after it returns arrives.
	WatchReleases(ctx context.Context, fn func(ReleaseRequest)) (stop func(), err error)
	// Commit applies c atomically (see Commit) and returns the new session.
	Commit(ctx context.Context, l Lease, c Commit) (Session, error)

	// DeleteUpload removes a session and soft-deletes its asset, returning
	// the session as it was (for the sink to free its bytes).
	// ErrNotFound when already gone.
	DeleteUpload(ctx context.Context, id string) (Session, error)
	// DeleteUploadLeased is DeleteUpload done only while l is the upload's
	// current, unexpired lease, in the same atomic step: ErrLeaseLost if it
	// is not (a newer request took the upload and may have committed to
	// it), ErrNotFound when the upload is gone. A DELETE or the janitor
	// that took the lease deletes with it, so that losing the lease while
	// it freed the storage never deletes bytes a newer request committed.
	DeleteUploadLeased(ctx context.Context, l Lease) (Session, error)
	// Expired lists up to limit sessions, not completed, whose ExpiresAt is
	// before now.
	Expired(ctx context.Context, now time.Time, limit int) ([]Session, error)

	// Asset returns an asset; ErrNotFound when unknown or deleted.
	Asset(ctx context.Context, id string) (Asset, error)

	// CreateKey stores a key; ErrExists if its hash or id is taken.
	CreateKey(ctx context.Context, k Key) error
	// KeyByHash finds an unrevoked key; ErrNotFound otherwise.
	KeyByHash(ctx context.Context, hash string) (Key, error)
	// Keys lists all keys, revoked ones too.
	Keys(ctx context.Context) ([]Key, error)
	// RevokeKey marks a key revoked; ErrNotFound if unknown. The
	// revocation reaches WatchKeyRevocations of every store sharing the
	// data (every node of a fleet) at once.
	RevokeKey(ctx context.Context, id string) error
	// WatchKeyRevocations calls fn with the hash of every key revoked
	// through any store sharing this one's data, until ctx ends (then it
	// returns nil). fn("") means revocations may have been missed (the
	// subscription started or reconnected): forget every cached key. The
	// calls come one at a time. Delivery is immediate but not durable:
	// callers still bound how long they cache a key.
	WatchKeyRevocations(ctx context.Context, fn func(hash string)) error

	// ClaimProbe hands out one ready job to consumer, waiting up to block
	// for one. Jobs claimed by a consumer that did not finish them within
	// reclaimAfter are handed out again. ErrEmpty when none is ready.
	ClaimProbe(ctx context.Context, consumer string, block, reclaimAfter time.Duration) (ProbeJob, error)
	// AckProbe records the probe's result on the asset ("" = non-media)
	// and removes the job.
	AckProbe(ctx context.Context, job ProbeJob, durationSeconds string) error
	// RetryProbe requeues the job with Attempts+1, ready after delay.
	RetryProbe(ctx context.Context, job ProbeJob, delay time.Duration, reason string) error
	// DeadProbe moves the job to the dead-letter list with the reason.
	DeadProbe(ctx context.Context, job ProbeJob, reason string) error
	// DeadProbes lists the dead-letter list.
	DeadProbes(ctx context.Context) ([]DeadProbe, error)

	// Ping checks the backend is reachable (for /readyz). It answers
	// ErrDataLost, once, when the backend lost its data since the store
	// was opened or since the last ErrDataLost; the caller re-seeds what
	// it owns (static keys).
	Ping(ctx context.Context) error
	Close() error

	// Quotas per account (see quota.go). Usage is kept by
	// reservation: each upload in progress holds one, made before its
	// session is stored and undone after it is gone. A crash between the
	// two steps leaves a hold whose upload is gone or completed; the
	// janitor finds it through QuotaHolds and settles or releases it.

	// SetQuota replaces the account's limits (a field QuotaDefault: the
	// server's default).
	SetQuota(ctx context.Context, account string, l QuotaLimits) error
	// Quota returns the account's stored limits (QuotaDefault where none
	// is set) and usage; an account never seen has all-default limits
	// and no usage.
	Quota(ctx context.Context, account string) (QuotaLimits, QuotaUsage, error)
	// ReserveQuota grows upload uploadID's hold to at least bytes, in one
	// atomic check-and-reserve against the account's limits (defaults
	// fill the fields it has no limit of its own for). The first hold of
	// an upload counts it in Uploads. A *QuotaError (ErrQuotaExceeded)
	// names the limit it would pass; nothing changes then. An upload
	// already settled is left alone.
	ReserveQuota(ctx context.Context, account, uploadID string, bytes int64, defaults QuotaLimits) error
	// SettleQuota converts the upload's hold into size stored bytes (it
	// completed). Idempotent.
	SettleQuota(ctx context.Context, account, uploadID string, size int64) error
	// ReleaseQuota drops whatever the upload holds: its hold, or its
	// stored bytes once completed (DELETE, expiry). Idempotent.
	ReleaseQuota(ctx context.Context, account, uploadID string) error
	// TouchQuota marks the upload's hold as seen now (QuotaHolds lists it
	// later again); no-op without a hold.
	TouchQuota(ctx context.Context, account, uploadID string) error
	// QuotaHolds lists up to limit holds not made or touched since
	// before, oldest first.
	QuotaHolds(ctx context.Context, before time.Time, limit int) ([]QuotaHold, error)

	// Webhooks (types in webhook.go).

	// CreateWebhook stores an account's endpoint; ErrExists if its id is
	// taken.
	CreateWebhook(ctx context.Context, h Webhook) error
	// Webhooks lists an account's endpoints, oldest first.
	Webhooks(ctx context.Context, account string) ([]Webhook, error)
	// Webhook returns one endpoint; ErrNotFound when unknown or deleted.
	Webhook(ctx context.Context, id string) (Webhook, error)
	// DeleteWebhook removes an endpoint of account and its delivery
	// records; ErrNotFound when unknown or another account's. Its queued
	// jobs find it gone and are dropped.
	DeleteWebhook(ctx context.Context, account, id string) error
	// EnqueueWebhookEvent queues one delivery of ev, in one atomic step,
	// for each of account's endpoints subscribed to ev.Type, and answers
	// how many.
	EnqueueWebhookEvent(ctx context.Context, account string, ev WebhookEvent) (int, error)
	// ClaimWebhook hands out one ready delivery job to consumer, waiting up
	// to block for one; a job claimed by a consumer that did not settle
	// it within reclaimAfter is handed out again. ErrEmpty when none.
	ClaimWebhook(ctx context.Context, consumer string, block, reclaimAfter time.Duration) (WebhookJob, error)
	// SettleWebhook records out as the job's delivery state and removes
	// the job, or requeues it (DeliveryRetrying). A job that is no longer
	// queued (settled by a consumer that reclaimed it) is left alone.
	SettleWebhook(ctx context.Context, job WebhookJob, out WebhookOutcome) error
	// WebhookDeliveries lists the latest state of the endpoint's
	// deliveries (up to MaxWebhookDeliveries), newest first.
	WebhookDeliveries(ctx context.Context, hookID string) ([]WebhookDelivery, error)
	// AssetRecord returns an asset as stored, a deleted one too (Deleted
	// set): whether a change an event was queued before happened, even if
	// the asset was deleted since. ErrNotFound when never stored.
	AssetRecord(ctx context.Context, id string) (Asset, error)

	// Direct uploads: a grant for one upload without an API
	// key. Its id is also the id of the session and asset it creates.

	// CreateDirectUpload stores d and its asset a (state StateWaiting);
	// ErrExists when the id is taken.
	CreateDirectUpload(ctx context.Context, d DirectUpload, a Asset) error
	// DirectUpload returns a direct upload, revoked ones too; ErrNotFound
	// when unknown.
	DirectUpload(ctx context.Context, id string) (DirectUpload, error)
	// ClaimDirectUpload creates the upload of direct upload id: in one
	// atomic step it checks that the grant is neither revoked (ErrRevoked)
	// nor past its ExpiresAt at now (ErrDirectExpired) nor used
	// (ErrExists), then stores s and a (a replaces the waiting asset, s.ID
	// and a.ID are id) as CreateUpload does and marks the grant Created
	// by claim, a non-empty id of the request. The same claim again, while
	// its upload exists, succeeds without a change: a request whose answer
	// was lost (a client that resends the call) is not refused its own
	// upload. Any other claim of a used grant is ErrExists, and so is
	// every claim once its upload was deleted. ErrNotFound when unknown.
	ClaimDirectUpload(ctx context.Context, id, claim string, now time.Time, s Session, a Asset) error
	// RevokeDirectUpload marks the grant revoked (again: no change) and,
	// when no upload was created with it, deletes its waiting asset. It
	// returns the grant as it now is; ErrNotFound when unknown.
	RevokeDirectUpload(ctx context.Context, id string) (DirectUpload, error)
}
