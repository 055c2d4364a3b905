package sessionstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
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
	// Webhooks: see local_webhooks.go.
	boltBucketHooks     = []byte("webhooks")   // webhook id → JSON Webhook
	boltBucketHookQueue = []byte("webhookq")   // boltBE64(ready ns) + boltBE64(seq) → JSON localHookRecord
	boltBucketHookLog   = []byte("webhooklog") // webhook id → bucket: event id → JSON WebhookDelivery

	boltKeyEpoch = []byte("epoch")
)

// Local is the embedded Store for one node: a bbolt file. Every change is
// one bbolt Update transaction, fsynced before the call returns, so a
// SIGKILL at any moment loses nothing that was acknowledged.
//
// Leases and probe claims live in memory: on one node, a restart means
// every old holder is dead. Fencing tokens still grow across restarts
// (tokens are epoch<<32 | counter, the epoch is bumped durably on open),
// and part reservations (Session.NextPart) are durable.
type Local struct {
	db *bolt.DB

	// mu guards the fields below. It is never held across disk I/O: at
	// most it is taken briefly inside a transaction callback, and it is
	// never held while starting a transaction.
	mu      sync.Mutex
	epoch   int64
	counter int64
	leases  map[string]localLease
	// heads are the uploads' head fences (local_fence.go).
	heads localHeads
	// probes and hooks are the probe and webhook queues (their claims
	// are guarded by mu).
	probes, hooks *localQueue

	// node is this process's node id; releaseWatchers get its release
	// requests (guarded by wmu, not mu: a callback may call the store).
	node            string
	wmu             sync.Mutex
	releaseWatchers map[int]func(ReleaseRequest)
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

var _ Store = (*Local)(nil)

// NewLocal opens (or creates) the bbolt file at path, e.g.
// <data-dir>/roughy.db.
func NewLocal(path string) (*Local, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("sessionstore: open %s: %w", path, err)
	}
	var epoch uint64
	err = db.Update(func(tx *bolt.Tx) error {
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
		return meta.Put(boltKeyEpoch, boltBE64(epoch))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sessionstore: init %s: %w", path, err)
	}
	return &Local{
		db:     db,
		epoch:  int64(epoch),
		leases: map[string]localLease{},
		probes: newLocalQueue("probe", boltBucketProbe),
		hooks:  newLocalQueue("webhook", boltBucketHookQueue),
		closed: make(chan struct{}),
		// One node: a restart is a new node, and leases (in memory) do
		// not survive it anyway.
		node:            newNodeID(),
		releaseWatchers: map[int]func(ReleaseRequest){},
	}, nil
}

// Close releases waiting claimers and closes the file.
func (l *Local) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	if err := l.db.Close(); err != nil {
		return fmt.Errorf("sessionstore: close: %w", err)
	}
	return nil
}

// Ping checks the file is open and readable.
func (l *Local) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.view("ping", func(*bolt.Tx) error { return nil })
}

// update runs fn in one fsynced write transaction and maps the errors.
func (l *Local) update(op string, fn func(tx *bolt.Tx) error) error {
	return boltErr(op, l.db.Update(fn))
}

// view runs fn in a read transaction and maps the errors.
func (l *Local) view(op string, fn func(tx *bolt.Tx) error) error {
	return boltErr(op, l.db.View(fn))
}

// ErrStorageFull: the embedded store's disk is full (ENOSPC, EDQUOT). It
// wraps ErrUnavailable: the transaction was rolled back, nothing changed.
var ErrStorageFull = fmt.Errorf("%w: no space left on the device", ErrUnavailable)

// boltErr keeps this package's sentinels and turns everything else (a
// closed file, a full disk, a failed fsync) into ErrUnavailable, a full
// disk into ErrStorageFull.
func boltErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("sessionstore: local %s: %w: %w", op, ErrStorageFull, err)
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrExists), errors.Is(err, ErrOffsetConflict),
		errors.Is(err, ErrLocked), errors.Is(err, ErrLeaseLost), errors.Is(err, ErrPartsExhausted),
		errors.Is(err, ErrEmpty), errors.Is(err, ErrUnavailable):
		return fmt.Errorf("sessionstore: local %s: %w", op, err)
	default:
		return fmt.Errorf("sessionstore: local %s: %w: %w", op, ErrUnavailable, err)
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

func boltExpiryKey(s Session) []byte {
	return append(boltBE64(boltUnixNano(s.ExpiresAt)), s.ID...)
}

// boltGet decodes the value at key into v; ErrNotFound when absent.
func boltGet(b *bolt.Bucket, key []byte, v any) error {
	raw := b.Get(key)
	if raw == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode %q: %w", key, err)
	}
	return nil
}

func boltPut(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %q: %w", key, err)
	}
	return b.Put(key, raw)
}

// boltAppend stores v under b's next sequence number, so that boltList
// answers values in the order they were appended.
func boltAppend(b *bolt.Bucket, v any) error {
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	return boltPut(b, boltBE64(seq), v)
}

// boltList decodes every value of b, in key order.
func boltList[T any](b *bolt.Bucket) ([]T, error) {
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

func boltSession(tx *bolt.Tx, id string) (Session, error) {
	var s Session
	err := boltGet(tx.Bucket(boltBucketSessions), []byte(id), &s)
	return s, err
}

// boltAsset returns a live asset; ErrNotFound when unknown or deleted.
func boltAsset(tx *bolt.Tx, id string) (Asset, error) {
	var a Asset
	if id == "" {
		return a, ErrNotFound
	}
	if err := boltGet(tx.Bucket(boltBucketAssets), []byte(id), &a); err != nil {
		return a, err
	}
	if a.Deleted {
		return Asset{}, ErrNotFound
	}
	return a, nil
}

// CreateUpload stores a new session and, when a.ID is set, its asset.
func (l *Local) CreateUpload(ctx context.Context, s Session, a Asset) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.NextPart < 1 {
		s.NextPart = 1
	}
	return l.update("create upload", func(tx *bolt.Tx) error { return boltCreateUpload(tx, s, a) })
}

// boltCreateUpload is CreateUpload inside tx.
func boltCreateUpload(tx *bolt.Tx, s Session, a Asset) error {
	sessions, assets := tx.Bucket(boltBucketSessions), tx.Bucket(boltBucketAssets)
	if sessions.Get([]byte(s.ID)) != nil {
		return fmt.Errorf("session %s: %w", s.ID, ErrExists)
	}
	if a.ID != "" {
		if assets.Get([]byte(a.ID)) != nil {
			return fmt.Errorf("asset %s: %w", a.ID, ErrExists)
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
func (l *Local) Session(ctx context.Context, id string) (Session, error) {
	if err := ctx.Err(); err != nil {
		return Session{}, err
	}
	var s Session
	err := l.view("session", func(tx *bolt.Tx) error {
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
func (l *Local) Parts(ctx context.Context, id string) ([]Part, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var parts []Part
	err := l.view("parts", func(tx *bolt.Tx) error {
		if tx.Bucket(boltBucketSessions).Get([]byte(id)) == nil {
			return ErrNotFound
		}
		b := tx.Bucket(boltBucketParts).Bucket([]byte(id))
		if b == nil {
			return nil
		}
		var err error
		parts, err = boltList[Part](b)
		return err
	})
	return parts, err
}

// SetLength sets a deferred Upload-Length once, and the asset's size.
func (l *Local) SetLength(ctx context.Context, id string, length int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.update("set length", func(tx *bolt.Tx) error {
		s, err := boltSession(tx, id)
		if err != nil {
			return err
		}
		switch {
		case s.Length >= 0 && s.Length == length:
			return nil
		case s.Length >= 0:
			return fmt.Errorf("length already %d, not %d: %w", s.Length, length, ErrOffsetConflict)
		case length < s.Offset:
			return fmt.Errorf("length %d below offset %d: %w", length, s.Offset, ErrOffsetConflict)
		}
		s.Length = length
		if err := boltSetAssetSize(tx, s.AssetID, length); err != nil {
			return err
		}
		return boltPut(tx.Bucket(boltBucketSessions), []byte(id), s)
	})
}

// boltSetAssetSize records a now-known length on the asset, if there is one.
func boltSetAssetSize(tx *bolt.Tx, assetID string, size int64) error {
	a, err := boltAsset(tx, assetID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	a.SizeBytes = size
	return boltPut(tx.Bucket(boltBucketAssets), []byte(a.ID), a)
}

// nextToken returns a fencing token larger than every earlier one, in this
// process and in every earlier process on the same file. Caller holds mu.
func (l *Local) nextToken() int64 {
	l.counter++
	return l.epoch<<32 | l.counter
}

// AcquireLease takes the upload's lease for ttl and durably reserves parts
// part numbers.
func (l *Local) AcquireLease(ctx context.Context, id string, ttl time.Duration, parts int32) (Lease, error) {
	return l.acquireLease(ctx, id, ttl, parts, -1)
}

// acquireLease takes the lease; fence < 0 checks no head fence.
func (l *Local) acquireLease(ctx context.Context, id string, ttl time.Duration, parts int32, fence int64) (Lease, error) {
	if err := ctx.Err(); err != nil {
		return Lease{}, err
	}
	if parts < 0 {
		return Lease{}, fmt.Errorf("sessionstore: local acquire lease: %d parts: %w", parts, ErrPartsExhausted)
	}
	l.mu.Lock()
	heads := l.heads.fence(id)
	if err := l.refusal(id, fence, heads); err != nil {
		l.mu.Unlock()
		return Lease{}, err
	}
	token := l.nextToken()
	// The pending entry keeps other acquirers out while the reservation is
	// written, without holding mu during the fsync.
	l.leases[id] = localLease{token: token, expires: time.Now().Add(ttl), pending: true}
	l.mu.Unlock()

	var first int32
	var snap Session
	reserve := func(tx *bolt.Tx) error {
		s, err := boltSession(tx, id)
		if err != nil {
			return err
		}
		first = max(s.NextPart, 1)
		snap = s
		if parts == 0 {
			return nil
		}
		if int64(first)+int64(parts)-1 > MaxPartNumber {
			return fmt.Errorf("next part %d + %d: %w", first, parts, ErrPartsExhausted)
		}
		s.NextPart = first + parts
		snap = s
		return boltPut(tx.Bucket(boltBucketSessions), []byte(id), s)
	}
	var err error
	if parts == 0 {
		err = l.view("acquire lease", reserve)
	} else {
		err = l.update("acquire lease", reserve)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	cur, ok := l.leases[id]
	if !ok || cur.token != token { // deleted meanwhile
		if err == nil {
			err = fmt.Errorf("sessionstore: local acquire lease %s: %w", id, ErrNotFound)
		}
		return Lease{}, err
	}
	if err != nil {
		delete(l.leases, id)
		return Lease{}, err
	}
	cur.pending = false
	cur.expires = time.Now().Add(ttl)
	l.leases[id] = cur
	// As it stood when the lease was taken: an offset retrieval since
	// found the lease (pending) held.
	snap.HeadFence = heads
	return Lease{SessionID: id, Token: token, FirstPart: first, Parts: parts, ExpiresAt: cur.expires,
		Holder: l.node, Session: snap}, nil
}

// Node returns this process's node id. Every lease of a Local store is
// held by it: one process owns the bbolt file.
func (l *Local) Node() string { return l.node }

// RequestRelease hands r to this process's watchers when holder is this
// node; a request for another node (a process that has ended) has nobody
// to reach and is dropped.
func (l *Local) RequestRelease(ctx context.Context, holder string, r ReleaseRequest) error {
	if holder != l.node {
		return nil
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	for _, fn := range l.releaseWatchers {
		fn(r)
	}
	return nil
}

// WatchReleases registers fn for this node's release requests.
func (l *Local) WatchReleases(ctx context.Context, fn func(ReleaseRequest)) (func(), error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	id := l.nextW
	l.nextW++
	l.releaseWatchers[id] = fn
	return func() {
		l.wmu.Lock()
		defer l.wmu.Unlock()
		delete(l.releaseWatchers, id)
	}, nil
}

// holds reports whether ls is the upload's current, unexpired lease.
// Caller holds mu.
func (l *Local) holds(ls Lease) bool {
	cur, ok := l.leases[ls.SessionID]
	return ok && !cur.pending && cur.token == ls.Token && time.Now().Before(cur.expires)
}

// RenewLease extends a held lease by ttl from now.
func (l *Local) RenewLease(ctx context.Context, ls Lease, ttl time.Duration) (Lease, error) {
	if err := ctx.Err(); err != nil {
		return Lease{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.holds(ls) {
		return Lease{}, fmt.Errorf("sessionstore: local renew lease %s: %w", ls.SessionID, ErrLeaseLost)
	}
	ls.ExpiresAt = time.Now().Add(ttl)
	l.leases[ls.SessionID] = localLease{token: ls.Token, expires: ls.ExpiresAt}
	return ls, nil
}

// DropLease drops the upload's lease when node is this process (the
// holder of every Local lease) and its token is token.
func (l *Local) DropLease(ctx context.Context, id, node string, token int64) error {
	if node != l.node {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.leases[id]; ok && !cur.pending && cur.token == token {
		delete(l.leases, id)
	}
	return nil
}

// ReleaseLease drops the lease if it is still the current one.
func (l *Local) ReleaseLease(ctx context.Context, ls Lease) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.leases[ls.SessionID]; ok && cur.token == ls.Token {
		delete(l.leases, ls.SessionID)
	}
	return nil
}

// Commit applies c in one transaction if ls is current and the stored
// offset is c.ExpectOffset. A Complete commit makes the asset ready and
// enqueues its probe job in the same transaction.
func (l *Local) Commit(ctx context.Context, ls Lease, c Commit) (Session, error) {
	if err := ctx.Err(); err != nil {
		return Session{}, err
	}
	var s Session
	var enqueued bool
	err := l.update("commit", func(tx *bolt.Tx) error {
		// Checked inside the write transaction: bbolt serialises writers,
		// so no other commit of this upload runs between check and write.
		l.mu.Lock()
		held := l.holds(ls)
		l.mu.Unlock()
		if !held {
			return fmt.Errorf("upload %s token %d: %w", ls.SessionID, ls.Token, ErrLeaseLost)
		}
		var err error
		if s, err = boltSession(tx, ls.SessionID); err != nil {
			return err
		}
		if err := localCheckCommit(s, c); err != nil {
			return err
		}
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
			if err := boltAppendParts(tx, s.ID, c.Parts); err != nil {
				return err
			}
		}
		expiry := tx.Bucket(boltBucketExpiry)
		if !c.ExpiresAt.IsZero() && !c.ExpiresAt.Equal(s.ExpiresAt) {
			// Move the index entry with the session's expiry.
			if err := expiry.Delete(boltExpiryKey(s)); err != nil {
				return err
			}
			s.ExpiresAt = c.ExpiresAt
			if !c.Complete {
				if err := expiry.Put(boltExpiryKey(s), nil); err != nil {
					return err
				}
			}
		}
		if c.Complete {
			if s.Length < 0 {
				s.Length = c.NewOffset
			}
			s.Completed = true
			if err := expiry.Delete(boltExpiryKey(s)); err != nil {
				return err
			}
			// The final object is built: its parts are not needed anymore.
			if err := boltDeleteParts(tx, s.ID); err != nil {
				return err
			}
			if enqueued, err = boltCompleteAsset(tx, s.AssetID, c); err != nil {
				return err
			}
		}
		return boltPut(tx.Bucket(boltBucketSessions), []byte(s.ID), s)
	})
	if err != nil {
		return Session{}, err
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

// localCheckCommit refuses a commit that does not apply to s.
func localCheckCommit(s Session, c Commit) error {
	switch {
	case s.Offset != c.ExpectOffset:
		return fmt.Errorf("offset %d, commit expects %d: %w", s.Offset, c.ExpectOffset, ErrOffsetConflict)
	case s.Completed:
		return fmt.Errorf("upload already completed: %w", ErrOffsetConflict)
	case c.NewOffset < 0, c.NewOffset < c.ExpectOffset && (!c.Rewind || c.Complete):
		return fmt.Errorf("new offset %d below %d: %w", c.NewOffset, c.ExpectOffset, ErrOffsetConflict)
	}
	length := s.Length
	switch {
	case length < 0:
		length = c.Length
	case c.Length >= 0 && c.Length != length:
		return fmt.Errorf("length already %d, commit sets %d: %w", length, c.Length, ErrOffsetConflict)
	}
	switch {
	case length >= 0 && c.NewOffset > length:
		return fmt.Errorf("new offset %d past length %d: %w", c.NewOffset, length, ErrOffsetConflict)
	case c.Complete && length >= 0 && c.NewOffset != length:
		return fmt.Errorf("complete at %d, length %d: %w", c.NewOffset, length, ErrOffsetConflict)
	}
	return nil
}

func boltAppendParts(tx *bolt.Tx, id string, parts []Part) error {
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
func boltDeleteParts(tx *bolt.Tx, id string) error {
	parts := tx.Bucket(boltBucketParts)
	if parts.Bucket([]byte(id)) == nil {
		return nil
	}
	return parts.DeleteBucket([]byte(id))
}

// boltCompleteAsset makes the asset ready and enqueues its probe job; false
// when the session has no asset (a concatenation partial).
func boltCompleteAsset(tx *bolt.Tx, assetID string, c Commit) (bool, error) {
	a, err := boltAsset(tx, assetID)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	a.State, a.SHA256, a.SizeBytes = StateReady, c.SHA256, c.NewOffset
	if err := boltPut(tx.Bucket(boltBucketAssets), []byte(a.ID), a); err != nil {
		return false, err
	}
	return true, boltPutProbe(tx, time.Now(), localProbeRecord{AssetID: a.ID})
}

// DeleteUpload removes a session and its parts and soft-deletes its asset.
func (l *Local) DeleteUpload(ctx context.Context, id string) (Session, error) {
	return l.deleteUpload(ctx, id, nil)
}

// DeleteUploadLeased deletes the upload while ls is its current lease.
func (l *Local) DeleteUploadLeased(ctx context.Context, ls Lease) (Session, error) {
	return l.deleteUpload(ctx, ls.SessionID, &ls)
}

// deleteUpload deletes upload id, if ls is nil or still the current lease.
func (l *Local) deleteUpload(ctx context.Context, id string, ls *Lease) (Session, error) {
	if err := ctx.Err(); err != nil {
		return Session{}, err
	}
	var s Session
	err := l.update("delete upload", func(tx *bolt.Tx) error {
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
				return fmt.Errorf("upload %s token %d: %w", id, ls.Token, ErrLeaseLost)
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
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		a.Deleted = true
		return boltPut(tx.Bucket(boltBucketAssets), []byte(a.ID), a)
	})
	if err != nil {
		return Session{}, err
	}
	l.mu.Lock()
	delete(l.leases, id)
	l.heads.forget(id)
	l.mu.Unlock()
	return s, nil
}

// Expired lists up to limit uncompleted sessions whose ExpiresAt is before
// now, oldest first.
func (l *Local) Expired(ctx context.Context, now time.Time, limit int) ([]Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []Session
	before := boltUnixNano(now)
	err := l.view("expired", func(tx *bolt.Tx) error {
		c := tx.Bucket(boltBucketExpiry).Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			if len(k) < 8 || binary.BigEndian.Uint64(k[:8]) >= before {
				break
			}
			s, err := boltSession(tx, string(k[8:]))
			if errors.Is(err, ErrNotFound) {
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
func (l *Local) Asset(ctx context.Context, id string) (Asset, error) {
	if err := ctx.Err(); err != nil {
		return Asset{}, err
	}
	var a Asset
	err := l.view("asset", func(tx *bolt.Tx) error {
		var err error
		a, err = boltAsset(tx, id)
		return err
	})
	return a, err
}
