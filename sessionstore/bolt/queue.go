package bolt

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/roughy/ingest/sessionstore"
)

// localProbeRecord is a queued probe job; its bbolt key is boltBE64(ready time) +
// boltBE64(sequence), so a cursor walks jobs in the order they become ready.
// ProbeJob.ID is the hex of that key: a retry gets a new key and id.
type localProbeRecord struct {
	AssetID  string
	Attempts int
	Reason   string `json:",omitempty"` // why the last attempt failed
}

// localProbeClaim is an in-memory claim. Claims need not be durable: after a
// restart, every consumer of this process is gone, so every job is ready
// again.
type localProbeClaim struct {
	consumer string
	at       time.Time
}

// localProbeScan bounds the jobs one claim attempt looks at.
const localProbeScan = 64

// boltPutProbe enqueues rec, ready at ready.
func boltPutProbe(tx *bbolt.Tx, ready time.Time, rec localProbeRecord) error {
	b := tx.Bucket(boltBucketProbe)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	return boltPut(b, append(boltBE64(boltUnixNano(ready)), boltBE64(seq)...), rec)
}

// wake tells one waiting probe claimer that a job may be ready; it never
// blocks.
func (l *Store) wake() { l.probes.wake() }

// CreateKey stores a key; ErrExists if its id or hash is taken.
func (l *Store) CreateKey(ctx context.Context, k sessionstore.Key) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.update("create key", func(tx *bbolt.Tx) error {
		keys, byHash := tx.Bucket(boltBucketKeys), tx.Bucket(boltBucketKeyHash)
		if keys.Get([]byte(k.ID)) != nil {
			return fmt.Errorf("key id %s: %w", k.ID, sessionstore.ErrExists)
		}
		if byHash.Get([]byte(k.Hash)) != nil {
			return fmt.Errorf("key %s: hash: %w", k.ID, sessionstore.ErrExists)
		}
		if err := byHash.Put([]byte(k.Hash), []byte(k.ID)); err != nil {
			return err
		}
		return boltPut(keys, []byte(k.ID), k)
	})
}

// KeyByHash finds an unrevoked key by the hash of its secret.
func (l *Store) KeyByHash(ctx context.Context, hash string) (sessionstore.Key, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.Key{}, err
	}
	var k sessionstore.Key
	err := l.view("key by hash", func(tx *bbolt.Tx) error {
		id := tx.Bucket(boltBucketKeyHash).Get([]byte(hash))
		if id == nil {
			return sessionstore.ErrNotFound
		}
		if err := boltGet(tx.Bucket(boltBucketKeys), id, &k); err != nil {
			return err
		}
		if k.Revoked {
			return sessionstore.ErrNotFound
		}
		return nil
	})
	return k, err
}

// Keys lists every key, revoked ones too, by id.
func (l *Store) Keys(ctx context.Context) ([]sessionstore.Key, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []sessionstore.Key
	err := l.view("keys", func(tx *bbolt.Tx) error {
		var err error
		out, err = boltList[sessionstore.Key](tx.Bucket(boltBucketKeys))
		return err
	})
	return out, err
}

// RevokeKey marks a key revoked; ErrNotFound if unknown.
func (l *Store) RevokeKey(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var hash string
	err := l.update("revoke key", func(tx *bbolt.Tx) error {
		var k sessionstore.Key
		if err := boltGet(tx.Bucket(boltBucketKeys), []byte(id), &k); err != nil {
			return err
		}
		k.Revoked, hash = true, k.Hash
		return boltPut(tx.Bucket(boltBucketKeys), []byte(id), k)
	})
	if err != nil {
		return err
	}
	l.mu.Lock()
	watchers := make([]*localWatcher, 0, len(l.watchers))
	for w := range l.watchers {
		watchers = append(watchers, w)
	}
	l.mu.Unlock()
	for _, w := range watchers {
		w.call(hash)
	}
	return nil
}

// localWatcher is one WatchKeyRevocations caller.
type localWatcher struct {
	mu   sync.Mutex // one call at a time, none after done
	fn   func(hash string)
	done bool
}

func (w *localWatcher) call(hash string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.fn(hash)
	}
}

// WatchKeyRevocations calls fn for every key revoked through this store
// (one process holds the file, so that is every revocation) until ctx
// ends or the store is closed. Nothing can be missed: fn("") never comes.
func (l *Store) WatchKeyRevocations(ctx context.Context, fn func(hash string)) error {
	w := &localWatcher{fn: fn}
	l.mu.Lock()
	if l.watchers == nil {
		l.watchers = map[*localWatcher]struct{}{}
	}
	l.watchers[w] = struct{}{}
	l.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-l.closed:
	}
	l.mu.Lock()
	delete(l.watchers, w)
	l.mu.Unlock()
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
	return nil
}

// localQueue is one durable queue of the bbolt file: a bucket whose keys
// are boltBE64(ready ns) + boltBE64(seq), its in-memory claims (guarded by
// Store.mu) and the channel that wakes one waiting claimer. The probe queue
// and the webhook queue are two of them.
type localQueue struct {
	op     string // for errors: "probe", "webhook"
	bucket []byte
	claims map[string]localProbeClaim
	notify chan struct{}
}

func newLocalQueue(op string, bucket []byte) *localQueue {
	return &localQueue{op: op, bucket: bucket, claims: map[string]localProbeClaim{}, notify: make(chan struct{}, 1)}
}

// wake tells one waiting claimer of q that a job may be ready; it never
// blocks.
func (q *localQueue) wake() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// ClaimProbe hands out the oldest ready job that is unclaimed, or whose
// claim is older than reclaimAfter, waiting up to block for one.
func (l *Store) ClaimProbe(ctx context.Context, consumer string, block, reclaimAfter time.Duration) (sessionstore.ProbeJob, error) {
	id, raw, err := l.claim(ctx, l.probes, consumer, block, reclaimAfter)
	if err != nil {
		return sessionstore.ProbeJob{}, err
	}
	var rec localProbeRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return sessionstore.ProbeJob{}, fmt.Errorf("sessionstore: local claim probe: decode: %w", err)
	}
	return sessionstore.ProbeJob{ID: id, AssetID: rec.AssetID, Attempts: rec.Attempts}, nil
}

// claim hands out the oldest ready job of q that is unclaimed, or whose
// claim is older than reclaimAfter, waiting up to block for one. It answers
// the job's id (the hex of its key) and its stored value.
func (l *Store) claim(ctx context.Context, q *localQueue, consumer string, block, reclaimAfter time.Duration) (string, []byte, error) {
	deadline := time.Now().Add(block)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return "", nil, err
		}
		id, raw, ok, next, err := l.tryClaim(q, consumer, reclaimAfter)
		if err != nil || ok {
			return id, raw, err
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return "", nil, fmt.Errorf("sessionstore: local claim %s: %w", q.op, sessionstore.ErrEmpty)
		}
		if next > 0 && next < wait {
			wait = next
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return "", nil, ctx.Err()
		case <-l.closed:
			return "", nil, fmt.Errorf("sessionstore: local claim %s: closed: %w", q.op, sessionstore.ErrUnavailable)
		case <-q.notify:
		case <-timer.C:
		}
	}
}

// localCandidate is a ready job seen by tryClaim.
type localCandidate struct {
	id  string
	raw []byte
}

// tryClaim makes one attempt. When nothing is claimable, next is how soon
// something may become so (0: unknown, wait for a wake-up).
func (l *Store) tryClaim(q *localQueue, consumer string, reclaimAfter time.Duration) (id string, raw []byte, ok bool, next time.Duration, err error) {
	for {
		now := time.Now()
		next = 0
		var cands []localCandidate
		err = l.view("claim "+q.op, func(tx *bbolt.Tx) error {
			c := tx.Bucket(q.bucket).Cursor()
			for k, v := c.First(); k != nil && len(cands) < localProbeScan; k, v = c.Next() {
				if ready := int64(binary.BigEndian.Uint64(k[:8])); ready > now.UnixNano() {
					next = time.Duration(ready - now.UnixNano())
					break
				}
				cands = append(cands, localCandidate{id: hex.EncodeToString(k), raw: append([]byte(nil), v...)})
			}
			return nil
		})
		if err != nil {
			return "", nil, false, 0, err
		}

		chosen := -1
		l.mu.Lock()
		for i, c := range cands {
			if cl, claimed := q.claims[c.id]; claimed {
				if left := reclaimAfter - now.Sub(cl.at); left > 0 {
					if next == 0 || left < next {
						next = left
					}
					continue
				}
			}
			q.claims[c.id] = localProbeClaim{consumer: consumer, at: now}
			chosen = i
			break
		}
		l.mu.Unlock()
		if chosen < 0 {
			return "", nil, false, next, nil
		}
		c := cands[chosen]

		// The job may have been acked between the scan and the claim: an
		// acker deletes the job before it drops its claim, so a second look
		// after claiming settles it.
		key, _ := hex.DecodeString(c.id)
		var exists bool
		if err := l.view("claim "+q.op, func(tx *bbolt.Tx) error {
			exists = tx.Bucket(q.bucket).Get(key) != nil
			return nil
		}); err != nil {
			return "", nil, false, 0, err
		}
		if !exists {
			l.dropClaim(q, c.id, consumer, now)
			continue
		}
		if chosen < len(cands)-1 {
			q.wake() // more may be ready: pass the wake-up on
		}
		return c.id, c.raw, true, 0, nil
	}
}

// dropClaim removes a claim if it is still the one made at `at`.
func (l *Store) dropClaim(q *localQueue, id, consumer string, at time.Time) {
	l.mu.Lock()
	if cl, ok := q.claims[id]; ok && cl.consumer == consumer && cl.at.Equal(at) {
		delete(q.claims, id)
	}
	l.mu.Unlock()
}

// forgetClaim removes any claim of a job that no longer exists.
func (l *Store) forgetClaim(q *localQueue, id string) {
	l.mu.Lock()
	delete(q.claims, id)
	l.mu.Unlock()
}

// finishProbe removes job in one transaction and calls fn with its record;
// a job already gone (acked by a consumer that reclaimed it) is a no-op.
func (l *Store) finishProbe(op string, job sessionstore.ProbeJob, fn func(tx *bbolt.Tx, rec localProbeRecord) error) error {
	return l.finish(op, l.probes, job.ID, func(tx *bbolt.Tx, raw []byte) error {
		var rec localProbeRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return fmt.Errorf("decode probe job: %w", err)
		}
		return fn(tx, rec)
	})
}

// finish removes job id of q in one transaction and calls fn with its
// stored value; a job already gone (settled by a consumer that reclaimed
// it) is a no-op.
func (l *Store) finish(op string, q *localQueue, id string, fn func(tx *bbolt.Tx, raw []byte) error) error {
	key, err := hex.DecodeString(id)
	if err != nil || len(key) != 16 {
		return fmt.Errorf("sessionstore: local %s: job id %q: %w", op, id, sessionstore.ErrNotFound)
	}
	err = l.update(op, func(tx *bbolt.Tx) error {
		b := tx.Bucket(q.bucket)
		raw := b.Get(key)
		if raw == nil {
			return nil
		}
		raw = append([]byte(nil), raw...) // valid only until the delete
		if err := b.Delete(key); err != nil {
			return err
		}
		return fn(tx, raw)
	})
	if err != nil {
		return err
	}
	l.forgetClaim(q, id)
	return nil
}

// AckProbe stores the duration on the asset and removes the job.
func (l *Store) AckProbe(ctx context.Context, job sessionstore.ProbeJob, durationSeconds string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.finishProbe("ack probe", job, func(tx *bbolt.Tx, rec localProbeRecord) error {
		a, err := boltAsset(tx, rec.AssetID)
		if errors.Is(err, sessionstore.ErrNotFound) {
			return nil // deleted while it was probed
		}
		if err != nil {
			return err
		}
		a.DurationSeconds = durationSeconds
		return boltPut(tx.Bucket(boltBucketAssets), []byte(a.ID), a)
	})
}

// RetryProbe requeues the job with Attempts+1, ready after delay.
func (l *Store) RetryProbe(ctx context.Context, job sessionstore.ProbeJob, delay time.Duration, reason string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := l.finishProbe("retry probe", job, func(tx *bbolt.Tx, rec localProbeRecord) error {
		rec.Attempts++
		rec.Reason = reason
		return boltPutProbe(tx, time.Now().Add(delay), rec)
	})
	if err == nil {
		// A waiter recomputes how long to sleep from the queue.
		l.wake()
	}
	return err
}

// DeadProbe moves the job to the dead-letter list.
func (l *Store) DeadProbe(ctx context.Context, job sessionstore.ProbeJob, reason string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.finishProbe("dead probe", job, func(tx *bbolt.Tx, rec localProbeRecord) error {
		return boltAppend(tx.Bucket(boltBucketDead), sessionstore.DeadProbe{AssetID: rec.AssetID, Attempts: rec.Attempts, Reason: reason})
	})
}

// DeadProbes lists the dead-letter list, oldest first.
func (l *Store) DeadProbes(ctx context.Context) ([]sessionstore.DeadProbe, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []sessionstore.DeadProbe
	err := l.view("dead probes", func(tx *bbolt.Tx) error {
		var err error
		out, err = boltList[sessionstore.DeadProbe](tx.Bucket(boltBucketDead))
		return err
	})
	return out, err
}
