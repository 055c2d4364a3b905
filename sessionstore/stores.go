package sessionstore

import (
	"context"
	"time"
)

// Uploads are the upload sessions and their leases: what the upload path
// (create, PATCH, HEAD, DELETE, concatenation, the janitor) reads and
// commits. Every state change is one atomic step that names the offset it
// expects and the lease it holds.
type Uploads interface {
	// CreateUpload stores a new session and its asset (state uploading).
	CreateUpload(ctx context.Context, s Session, a Asset) error
	// CreateReserved is ReserveQuota, CreateUpload and, when c.Event is
	// set, EnqueueWebhookEvent of c in one atomic step: a *QuotaError or
	// ErrExists stores and holds nothing. The embedded store queues the
	// event in the same step (none on a refusal); Redis queues it with a
	// call of its own just before, as EmitBefore does (an event marked
	// Verify whose change never happened is dropped at delivery), and on
	// Cluster, where the quota is in another slot, reserves before it
	// creates and gives the hold back when the creation fails.
	CreateReserved(ctx context.Context, c Creation) error
	// Session returns a session; ErrNotFound when unknown or deleted.
	Session(ctx context.Context, id string) (Session, error)
	// OffsetSession is Session for offset retrieval: in the same atomic
	// step as Leased is read, it grows the upload's head fence (see
	// Session.HeadFence), so that every write that read the upload before
	// and holds no lease yet (a request on its way to the lease, the next
	// segment of a long append) lets go at its next lease. It answers the
	// session as it stands after that step. The fence is not written
	// durably (the embedded store keeps it in memory; Redis does not wait
	// for replicas): it only matters to requests in flight.
	OffsetSession(ctx context.Context, id string) (Session, error)
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
	// AcquireLeaseFenced is AcquireLease for a write whose request read
	// the upload's HeadFence as fence: ErrFenced, before the lease is
	// looked at, when the fence has grown since (an offset retrieval read
	// the upload after the request did). Nothing changes then.
	AcquireLeaseFenced(ctx context.Context, id string, ttl time.Duration, parts int32, fence int64) (Lease, error)
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
}

// Assets are what uploads become.
type Assets interface {
	// Asset returns an asset; ErrNotFound when unknown or deleted.
	Asset(ctx context.Context, id string) (Asset, error)
	// AssetRecord returns an asset as stored, a deleted one too (Deleted
	// set): whether a change an event was queued before happened, even if
	// the asset was deleted since. ErrNotFound when never stored.
	AssetRecord(ctx context.Context, id string) (Asset, error)
}

// Keys are the API keys (hashes only).
type Keys interface {
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
}

// Quotas are the per-account limits (see quota.go). Usage is kept by
// reservation: each upload in progress holds one, made before its
// session is stored and undone after it is gone. A crash between the
// two steps leaves a hold whose upload is gone or completed; the
// janitor finds it through QuotaHolds and settles or releases it.
type Quotas interface {
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
}

// Webhooks are an account's endpoints, the queueing of their events and
// the delivery records (types in webhook.go).
type Webhooks interface {
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
	// WebhookDeliveries lists the latest state of the endpoint's
	// deliveries (up to MaxWebhookDeliveries), newest first.
	WebhookDeliveries(ctx context.Context, hookID string) ([]WebhookDelivery, error)
}

// DirectUploads are grants for one upload without an API key. A grant's
// id is also the id of the session and asset it creates.
type DirectUploads interface {
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

// ProbeQueue is the durable job queue of ffprobe runs: a completing
// commit enqueues a job in the same atomic step, the probe workers claim
// and settle them (see ClaimFunc).
type ProbeQueue interface {
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
}

// WebhookQueue is the durable job queue of webhook deliveries, filled by
// EnqueueWebhookEvent and drained by the deliverers (see ClaimFunc).
type WebhookQueue interface {
	// ClaimWebhook hands out one ready delivery job to consumer, waiting up
	// to block for one; a job claimed by a consumer that did not settle
	// it within reclaimAfter is handed out again. ErrEmpty when none.
	ClaimWebhook(ctx context.Context, consumer string, block, reclaimAfter time.Duration) (WebhookJob, error)
	// SettleWebhook records out as the job's delivery state and removes
	// the job, or requeues it (DeliveryRetrying). A job that is no longer
	// queued (settled by a consumer that reclaimed it) is left alone.
	SettleWebhook(ctx context.Context, job WebhookJob, out WebhookOutcome) error
}

// ClaimFunc is how a worker claims from a durable job queue of jobs of type
// J (ProbeJob, WebhookJob): one ready job for consumer, waiting up to block
// for one. A job claimed by a consumer that did not settle it within
// reclaimAfter is handed out again (its consumer died); ErrEmpty when none
// is ready. ProbeQueue.ClaimProbe and WebhookQueue.ClaimWebhook are the
// two; each queue settles its jobs its own way (a probe's duration, a
// delivery's record).
type ClaimFunc[J any] func(ctx context.Context, consumer string, block, reclaimAfter time.Duration) (J, error)

// Store is everything the rest of Roughy needs from session state: one
// interface per concern, so that a consumer asks only for what it uses.
// bolt.Store and redis.Store implement it; storetest.Run checks both.
type Store interface {
	Uploads
	Assets
	Keys
	Quotas
	Webhooks
	DirectUploads
	ProbeQueue
	WebhookQueue

	// Ping checks the backend is reachable (for /readyz). It answers
	// ErrDataLost, once, when the backend lost its data since the store
	// was opened or since the last ErrDataLost; the caller re-seeds what
	// it owns (static keys).
	Ping(ctx context.Context) error
	Close() error
}
