package sessionstore

import (
	"context"
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ProbeQueueStats counts the probe queue and its dead letters. The
// oldest job is the first key: keys start with the time a job is ready.
func (l *Local) ProbeQueueStats(ctx context.Context) (ProbeQueueStats, error) {
	if err := ctx.Err(); err != nil {
		return ProbeQueueStats{}, err
	}
	var st ProbeQueueStats
	err := l.view("probe queue stats", func(tx *bolt.Tx) error {
		q := tx.Bucket(boltBucketProbe)
		st.Jobs = int64(q.Stats().KeyN)
		if k, _ := q.Cursor().First(); len(k) >= 8 {
			st.Oldest = time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))
		}
		st.Dead = int64(tx.Bucket(boltBucketDead).Stats().KeyN)
		return nil
	})
	return st, err
}

// QueueLengths counts the probe and webhook queues' jobs; a retry is the
// same record, keyed by the time it is due.
func (l *Local) QueueLengths(ctx context.Context) (QueueLengths, error) {
	if err := ctx.Err(); err != nil {
		return QueueLengths{}, err
	}
	var q QueueLengths
	err := l.view("queue lengths", func(tx *bolt.Tx) error {
		q.Probe = int64(tx.Bucket(boltBucketProbe).Stats().KeyN)
		q.Webhook = int64(tx.Bucket(boltBucketHookQueue).Stats().KeyN)
		return nil
	})
	return q, err
}
