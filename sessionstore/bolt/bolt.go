// Package bolt is the embedded sessionstore.Store for one node: every
// upload, asset, key, webhook and queued job in one bbolt file under the
// data dir. The bucket layout below is the on-disk format: an existing
// data dir must keep opening, so it only ever grows.
package bolt

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/roughy/ingest/sessionstore"
)

// Bucket names of the bbolt file.
var (
	boltBucketMeta     = []byte("meta")     // "epoch" → big-endian uint64
	boltBucketSessions = []byte("sessions") // session id → JSON Session
	boltBucketParts    = []byte("parts")    // session id → bucket: seq → JSON Part
	boltBucketExpiry   = []byte("expiry")   // boltBE64(ExpiresAt ns) + session id → nil
	boltBucketAssets   = []byte("assets")   // asset id → JSON Asset
	boltBucketKeys     = []byte("keys")     // key id → JSON Key
	boltBucketKeyHash  = []byte("keyhash")  // key hash → key id
	boltBucketProbe    = []byte("probe")    // boltBE64(ready ns) + boltBE64(seq) → JSON localProbeRecord
	boltBucketDead     = []byte("dead")     // boltBE64(seq) → JSON DeadProbe
	// Webhooks: see webhooks.go.
	boltBucketHooks     = []byte("webhooks")   // webhook id → JSON Webhook
	boltBucketHookQueue = []byte("webhookq")   // boltBE64(ready ns) + boltBE64(seq) → JSON localHookRecord
	boltBucketHookLog   = []byte("webhooklog") // webhook id → bucket (sequence: its record count, 0 if not counted yet): event id → JSON WebhookDelivery

	boltKeyEpoch = []byte("epoch")
)

// Store is the embedded sessionstore.Store for one node: a bbolt file. Every change is
// made in a bbolt write transaction (shared by concurrent changes), fsynced
// before the call returns, so a SIGKILL at any moment loses nothing that
// was acknowledged.
//
// Leases and probe claims live in memory: on one node, a restart means
// every old holder is dead. Fencing tokens still grow across restarts
// (tokens are epoch<<32 | counter, the epoch is bumped durably on open),
// and part reservations (Session.NextPart) are durable.
type Store struct {
	db *bbolt.DB
	// group runs concurrent write transactions as one (group.go).
	group *boltGroup

	// mu guards the fields below. It is never held across disk I/O: at
	// most it is taken briefly inside a transaction callback, and it is
	// never held while starting a transaction.
	mu      sync.Mutex
	epoch   int64
	counter int64
	leases  map[string]localLease
	// heads are the uploads' head fences (fence.go).
	heads localHeads
	// probes and hooks are the probe and webhook queues (their claims
	// are guarded by mu).
	probes, hooks *jobQueue
	// dead counts the dead-letter list as committed (see jobQueue.jobs).
	dead atomic.Int64

	// node is this process's node id; releaseWatchers get its release
	// requests (guarded by wmu, not mu: a callback may call the store).
	node            string
	wmu             sync.Mutex
	releaseWatchers map[int]func(sessionstore.ReleaseRequest)
	nextW           int

	// closed is closed by Close to release waiting claimers.
	closed    chan struct{}
	closeOnce sync.Once

	// watchers are the WatchKeyRevocations callers (guarded by mu, made
	// by the first); RevokeKey calls them before it returns, so a
	// revocation through the admin socket has reached the key cache when
	// `roughy keys revoke` answers.
	watchers map[*localWatcher]struct{}
}

// localLease is the in-memory state of one upload's lease.
type localLease struct {
	token   int64
	expires time.Time
	// pending marks a lease whose part reservation is being written; it
	// already excludes other acquirers.
	pending bool
}

var _ sessionstore.Store = (*Store)(nil)

// boltOptions are how New opens the file. The freelist is not written at
// each commit (NoFreelistSync) but rebuilt by a scan at open: a commit
// then writes only the pages it changed and the meta page, not also every
// free page's id, which with many uploads made and deleted is pages per
// commit on the store's single writer. The map freelist keeps allocation
// cheap as the free pages grow. Pages and records are unchanged: bbolt
// marks the meta page "no freelist" and a process opening the file with
// the default options rebuilds the freelist and writes it again at open
// (TestFreelistCompatible).
func boltOptions() *bbolt.Options {
	return &bbolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}
}

// New opens (or creates) the bbolt file at path, e.g.
// <data-dir>/roughy.db.
func New(path string) (*Store, error) {
	db, err := bbolt.Open(path, 0o600, boltOptions())
	if err != nil {
		return nil, fmt.Errorf("sessionstore: open %s: %w", path, err)
	}
	var epoch uint64
	var jobs, hookJobs, dead int64
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{boltBucketMeta, boltBucketSessions, boltBucketParts, boltBucketExpiry,
			boltBucketAssets, boltBucketKeys, boltBucketKeyHash, boltBucketProbe, boltBucketDead,
			boltBucketHooks, boltBucketHookQueue, boltBucketHookLog} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(boltBucketMeta)
		if v := meta.Get(boltKeyEpoch); len(v) == 8 {
			epoch = binary.BigEndian.Uint64(v)
		}
		epoch++
		// The queues' counts, kept from here on (jobQueue.jobs).
		jobs, hookJobs = boltCount(tx.Bucket(boltBucketProbe)), boltCount(tx.Bucket(boltBucketHookQueue))
		dead = boltCount(tx.Bucket(boltBucketDead))
		return meta.Put(boltKeyEpoch, boltBE64(epoch))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sessionstore: init %s: %w", path, err)
	}
	st := &Store{
		db:     db,
		group:  &boltGroup{db: db},
		epoch:  int64(epoch),
		leases: map[string]localLease{},
		closed: make(chan struct{}),
		// One node: a restart is a new node, and leases (in memory) do
		// not survive it anyway.
		node:            sessionstore.NewNodeID(),
		releaseWatchers: map[int]func(sessionstore.ReleaseRequest){},
	}
	st.probes = newJobQueue(st, "probe", boltBucketProbe)
	st.hooks = newJobQueue(st, "webhook", boltBucketHookQueue)
	st.probes.jobs.Store(jobs)
	st.hooks.jobs.Store(hookJobs)
	st.dead.Store(dead)
	return st, nil
}

// Close releases waiting claimers and closes the file.
func (l *Store) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	if err := l.db.Close(); err != nil {
		return fmt.Errorf("sessionstore: close: %w", err)
	}
	return nil
}

// Ping checks the file is open and readable.
func (l *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.view("ping", func(*bbolt.Tx) error { return nil })
}

// update runs fn in an fsynced write transaction, which it may share with
// concurrent callers (fn may run more than once: see boltGroup), and maps
// the errors.
func (l *Store) update(op string, fn func(tx *bbolt.Tx) error) error {
	return boltErr(op, l.group.update(fn))
}

// view runs fn in a read transaction and maps the errors.
func (l *Store) view(op string, fn func(tx *bbolt.Tx) error) error {
	return boltErr(op, l.db.View(fn))
}

// boltErr keeps this package's sentinels and turns everything else (a
// closed file, a full disk, a failed fsync) into ErrUnavailable, a full
// disk into ErrStorageFull.
func boltErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("sessionstore: local %s: %w: %w", op, sessionstore.ErrStorageFull, err)
	case errors.Is(err, sessionstore.ErrNotFound), errors.Is(err, sessionstore.ErrExists), errors.Is(err, sessionstore.ErrOffsetConflict),
		errors.Is(err, sessionstore.ErrLocked), errors.Is(err, sessionstore.ErrLeaseLost), errors.Is(err, sessionstore.ErrPartsExhausted),
		errors.Is(err, sessionstore.ErrEmpty), errors.Is(err, sessionstore.ErrUnavailable):
		return fmt.Errorf("sessionstore: local %s: %w", op, err)
	default:
		return fmt.Errorf("sessionstore: local %s: %w: %w", op, sessionstore.ErrUnavailable, err)
	}
}

func boltBE64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// boltUnixNano is t in nanoseconds since 1970, clamped at 0 so that index keys
// sort by time.
func boltUnixNano(t time.Time) uint64 {
	if n := t.UnixNano(); n > 0 {
		return uint64(n)
	}
	return 0
}

func boltExpiryKey(s sessionstore.Session) []byte {
	return append(boltBE64(boltUnixNano(s.ExpiresAt)), s.ID...)
}

// boltGet decodes the value at key into v; ErrNotFound when absent.
func boltGet(b *bbolt.Bucket, key []byte, v any) error {
	raw := b.Get(key)
	if raw == nil {
		return sessionstore.ErrNotFound
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode %q: %w", key, err)
	}
	return nil
}

func boltPut(b *bbolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %q: %w", key, err)
	}
	return b.Put(key, raw)
}

// boltAppend stores v under b's next sequence number, so that boltList
// answers values in the order they were appended.
func boltAppend(b *bbolt.Bucket, v any) error {
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	return boltPut(b, boltBE64(seq), v)
}

// boltList decodes every value of b, in key order.
func boltList[T any](b *bbolt.Bucket) ([]T, error) {
	var out []T
	err := b.ForEach(func(k, raw []byte) error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("decode %q: %w", k, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

func boltSession(tx *bbolt.Tx, id string) (sessionstore.Session, error) {
	var s sessionstore.Session
	err := boltGet(tx.Bucket(boltBucketSessions), []byte(id), &s)
	return s, err
}

// boltAsset returns a live asset; ErrNotFound when unknown or deleted.
func boltAsset(tx *bbolt.Tx, id string) (sessionstore.Asset, error) {
	var a sessionstore.Asset
	if id == "" {
		return a, sessionstore.ErrNotFound
	}
	if err := boltGet(tx.Bucket(boltBucketAssets), []byte(id), &a); err != nil {
		return a, err
	}
	if a.Deleted {
		return sessionstore.Asset{}, sessionstore.ErrNotFound
	}
	return a, nil
}
