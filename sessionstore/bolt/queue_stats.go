package bolt

import (
	"context"
	"encoding/binary"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/roughy/ingest/sessionstore"
)

// ProbeQueueStats counts the probe queue and its dead letters. The
// oldest job is the first key: keys start with the time a job is ready.
func (l *Store) ProbeQueueStats(ctx context.Context) (sessionstore.ProbeQueueStats, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.ProbeQueueStats{}, err
	}
	var st sessionstore.ProbeQueueStats
	err := l.view("probe queue stats", func(tx *bbolt.Tx) error {
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
func (l *Store) QueueLengths(ctx context.Context) (sessionstore.QueueLengths, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.QueueLengths{}, err
	}
	var q sessionstore.QueueLengths
	err := l.view("queue lengths", func(tx *bbolt.Tx) error {
		q.Probe = int64(tx.Bucket(boltBucketProbe).Stats().KeyN)
		q.Webhook = int64(tx.Bucket(boltBucketHookQueue).Stats().KeyN)
		return nil
	})
	return q, err
}
