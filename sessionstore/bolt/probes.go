package bolt

import (
	"context"
	"errors"
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

// wake tells one waiting probe claimer that a job may be ready; it never
// blocks.
func (l *Store) wake() { l.probes.wake() }

// ClaimProbe hands out the oldest ready job that is unclaimed, or whose
// claim is older than reclaimAfter, waiting up to block for one.
func (l *Store) ClaimProbe(ctx context.Context, consumer string, block, reclaimAfter time.Duration) (sessionstore.ProbeJob, error) {
	id, rec, err := claimAs[localProbeRecord](ctx, l.probes, consumer, block, reclaimAfter)
	if err != nil {
		return sessionstore.ProbeJob{}, err
	}
	return sessionstore.ProbeJob{ID: id, AssetID: rec.AssetID, Attempts: rec.Attempts}, nil
}

// finishProbe removes job in one transaction and calls fn with its record;
// a job already gone (acked by a consumer that reclaimed it) is a no-op.
func (l *Store) finishProbe(op string, job sessionstore.ProbeJob, fn func(tx *bbolt.Tx, rec localProbeRecord) error) error {
	return finishAs(l.probes, op, job.ID, fn)
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
		return l.probes.put(tx, time.Now().Add(delay), rec)
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
		if err := boltAppend(tx.Bucket(boltBucketDead), sessionstore.DeadProbe{AssetID: rec.AssetID, Attempts: rec.Attempts, Reason: reason}); err != nil {
			return err
		}
		tx.OnCommit(func() { l.dead.Add(1) })
		return nil
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
