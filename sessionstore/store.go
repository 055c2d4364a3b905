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
	// ErrFenced: AcquireLeaseFenced found an offset retrieval of the
	// upload (OffsetSession) newer than the fence the caller read: the
	// client was told an offset without this request, which must let go.
	ErrFenced = errors.New("sessionstore: the upload's offset was retrieved since the request read it")
	// ErrEmpty: no probe job is ready.
	ErrEmpty = errors.New("sessionstore: queue empty")
	// ErrDataLost: the backend no longer holds the data it held when the
	// store was opened (a Redis failover to an empty replica, FLUSHALL, a
	// restart without persistence). Ping reports it once per loss.
	ErrDataLost = errors.New("sessionstore: the store lost its data")
)

// ErrStorageFull means the embedded store's disk is full (ENOSPC, EDQUOT). It
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
	// HeadFence is the upload's head fence as read: it grows with every
	// OffsetSession. A write keeps the value its request first read and
	// takes each lease with AcquireLeaseFenced, so that it lets go
	// instead of writing once an offset retrieval answered without it.
	// 0 until the first OffsetSession; not every call fills it (Session,
	// OffsetSession and AcquireLease's Lease.Session do).
	HeadFence int64
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
	// Settle, with Complete, turns the upload's quota hold into
	// NewOffset stored bytes (SettleQuota of the session's account) once
	// the commit is applied: in the same atomic step on the embedded
	// store, in the same script on Redis unless the account's quota keys
	// live in another Cluster slot or the lease carries no session (then
	// right after it; a hold left unsettled by a failure there is settled
	// by the janitor, which finds it in QuotaHolds).
	Settle bool
	// Event, when set, is queued for the account's endpoints with the
	// commit (the asset.ready of a completing commit): in the same
	// transaction on the embedded store, so a refused commit queues
	// nothing; on standalone Redis in the commit's script when that
	// settles the quota (an event marked Verify), else before the commit,
	// a round trip of its own (an event marked Verify whose change never
	// happens is dropped at delivery).
	Event *WebhookEvent
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
