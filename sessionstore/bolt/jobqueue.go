package bolt

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/roughy/ingest/sessionstore"
)

// The probe queue and the webhook queue are one implementation: a
// jobQueue each, told apart only by their bucket and the record their
// values hold. Each kind settles its jobs its own way through finish.

// jobClaim is an in-memory claim. Claims need not be durable: after a
// restart, every consumer of this process is gone, so every job is ready
// again.
type jobClaim struct {
	consumer string
	at       time.Time
}

// jobScan bounds the jobs one claim attempt looks at.
const jobScan = 64

// jobQueue is one durable queue of the bbolt file: a bucket whose keys
// are boltBE64(ready ns) + boltBE64(seq), its in-memory claims (guarded by
// Store.mu), its job count and the channel that wakes one waiting claimer.
// The probe queue and the webhook queue are two of them.
type jobQueue struct {
	st     *Store
	op     string // for errors: "probe", "webhook"
	bucket []byte
	claims map[string]jobClaim
	notify chan struct{}
	// jobs counts the bucket's jobs as committed (counted on open, then
	// moved by commit handlers, which rolled-back writes never run), so
	// that /metrics does not walk the bucket.
	jobs atomic.Int64
}

func newJobQueue(st *Store, op string, bucket []byte) *jobQueue {
	return &jobQueue{st: st, op: op, bucket: bucket, claims: map[string]jobClaim{}, notify: make(chan struct{}, 1)}
}

// wake tells one waiting claimer of q that a job may be ready; it never
// blocks.
func (q *jobQueue) wake() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// claim hands out the oldest ready job of q that is unclaimed, or whose
// claim is older than reclaimAfter, waiting up to block for one. It answers
// the job's id (the hex of its key) and its stored value.
func (q *jobQueue) claim(ctx context.Context, consumer string, block, reclaimAfter time.Duration) (string, []byte, error) {
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
		id, raw, ok, next, err := q.tryClaim(consumer, reclaimAfter)
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
		case <-q.st.closed:
			return "", nil, fmt.Errorf("sessionstore: local claim %s: closed: %w", q.op, sessionstore.ErrUnavailable)
		case <-q.notify:
		case <-timer.C:
		}
	}
}

// jobCandidate is a ready job seen by tryClaim.
type jobCandidate struct {
	id  string
	raw []byte
}

// tryClaim makes one attempt. When nothing is claimable, next is how soon
// something may become so (0: unknown, wait for a wake-up).
func (q *jobQueue) tryClaim(consumer string, reclaimAfter time.Duration) (id string, raw []byte, ok bool, next time.Duration, err error) {
	for {
		now := time.Now()
		next = 0
		var cands []jobCandidate
		err = q.st.view("claim "+q.op, func(tx *bbolt.Tx) error {
			c := tx.Bucket(q.bucket).Cursor()
			for k, v := c.First(); k != nil && len(cands) < jobScan; k, v = c.Next() {
				if ready := int64(binary.BigEndian.Uint64(k[:8])); ready > now.UnixNano() {
					next = time.Duration(ready - now.UnixNano())
					break
				}
				cands = append(cands, jobCandidate{id: hex.EncodeToString(k), raw: append([]byte(nil), v...)})
			}
			return nil
		})
		if err != nil {
			return "", nil, false, 0, err
		}

		chosen := -1
		q.st.mu.Lock()
		for i, c := range cands {
			if cl, claimed := q.claims[c.id]; claimed {
				if left := reclaimAfter - now.Sub(cl.at); left > 0 {
					if next == 0 || left < next {
						next = left
					}
					continue
				}
			}
			q.claims[c.id] = jobClaim{consumer: consumer, at: now}
			chosen = i
			break
		}
		q.st.mu.Unlock()
		if chosen < 0 {
			return "", nil, false, next, nil
		}
		c := cands[chosen]

		// The job may have been acked between the scan and the claim: an
		// acker deletes the job before it drops its claim, so a second look
		// after claiming settles it.
		key, _ := hex.DecodeString(c.id)
		var exists bool
		if err := q.st.view("claim "+q.op, func(tx *bbolt.Tx) error {
			exists = tx.Bucket(q.bucket).Get(key) != nil
			return nil
		}); err != nil {
			return "", nil, false, 0, err
		}
		if !exists {
			q.dropClaim(c.id, consumer, now)
			continue
		}
		if chosen < len(cands)-1 {
			q.wake() // more may be ready: pass the wake-up on
		}
		return c.id, c.raw, true, 0, nil
	}
}

// dropClaim removes a claim if it is still the one made at `at`.
func (q *jobQueue) dropClaim(id, consumer string, at time.Time) {
	q.st.mu.Lock()
	if cl, ok := q.claims[id]; ok && cl.consumer == consumer && cl.at.Equal(at) {
		delete(q.claims, id)
	}
	q.st.mu.Unlock()
}

// forgetClaim removes any claim of a job that no longer exists.
func (q *jobQueue) forgetClaim(id string) {
	q.st.mu.Lock()
	delete(q.claims, id)
	q.st.mu.Unlock()
}

// finish removes job id of q in one transaction and calls fn with its
// stored value; a job already gone (settled by a consumer that reclaimed
// it) is a no-op.
func (q *jobQueue) finish(op, id string, fn func(tx *bbolt.Tx, raw []byte) error) error {
	key, err := hex.DecodeString(id)
	if err != nil || len(key) != 16 {
		return fmt.Errorf("sessionstore: local %s: job id %q: %w", op, id, sessionstore.ErrNotFound)
	}
	err = q.st.update(op, func(tx *bbolt.Tx) error {
		b := tx.Bucket(q.bucket)
		raw := b.Get(key)
		if raw == nil {
			return nil
		}
		raw = append([]byte(nil), raw...) // valid only until the delete
		if err := b.Delete(key); err != nil {
			return err
		}
		tx.OnCommit(func() { q.jobs.Add(-1) })
		return fn(tx, raw)
	})
	if err != nil {
		return err
	}
	q.forgetClaim(id)
	return nil
}

// put enqueues rec, ready at ready: its key is boltBE64(ready ns) +
// boltBE64(sequence), so a cursor walks jobs in the order they become
// ready. q's count grows once tx is committed.
func (q *jobQueue) put(tx *bbolt.Tx, ready time.Time, rec any) error {
	b := tx.Bucket(q.bucket)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	if err := boltPut(b, append(boltBE64(boltUnixNano(ready)), boltBE64(seq)...), rec); err != nil {
		return err
	}
	tx.OnCommit(func() { q.jobs.Add(1) })
	return nil
}

// boltCount counts b's keys with a cursor (Stats misses the writes of a
// write transaction); it reads the whole bucket, so it runs on open only.
func boltCount(b *bbolt.Bucket) int64 {
	var n int64
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

// claimAs claims one job of q, as claim does, and decodes its record.
func claimAs[R any](ctx context.Context, q *jobQueue, consumer string, block, reclaimAfter time.Duration) (string, R, error) {
	var rec R
	id, raw, err := q.claim(ctx, consumer, block, reclaimAfter)
	if err != nil {
		return "", rec, err
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		return "", rec, fmt.Errorf("sessionstore: local claim %s: decode: %w", q.op, err)
	}
	return id, rec, nil
}

// finishAs removes job id of q, as finish does, and calls fn with its
// decoded record.
func finishAs[R any](q *jobQueue, op, id string, fn func(tx *bbolt.Tx, rec R) error) error {
	return q.finish(op, id, func(tx *bbolt.Tx, raw []byte) error {
		var rec R
		if err := json.Unmarshal(raw, &rec); err != nil {
			return fmt.Errorf("decode %s job: %w", q.op, err)
		}
		return fn(tx, rec)
	})
}
