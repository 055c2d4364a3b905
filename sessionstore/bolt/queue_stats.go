package bolt

import (
	"context"
	"encoding/binary"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/roughy/ingest/sessionstore"
)

// ProbeQueueStats counts the probe queue and its dead letters (kept
// counts: no walk of the buckets). The oldest job is the first key: keys
// start with the time a job is ready.
func (l *Store) ProbeQueueStats(ctx context.Context) (sessionstore.ProbeQueueStats, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.ProbeQueueStats{}, err
	}
	var st sessionstore.ProbeQueueStats
	err := l.view("probe queue stats", func(tx *bbolt.Tx) error {
		if k, _ := tx.Bucket(boltBucketProbe).Cursor().First(); len(k) >= 8 {
			st.Oldest = time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))
		}
		return nil
	})
	if err != nil {
		return sessionstore.ProbeQueueStats{}, err
	}
	st.Jobs, st.Dead = l.probes.jobs.Load(), l.dead.Load()
	return st, nil
}

// QueueLengths counts the probe and webhook queues' jobs; a retry is the
// same record, keyed by the time it is due.
func (l *Store) QueueLengths(ctx context.Context) (sessionstore.QueueLengths, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.QueueLengths{}, err
	}
	// A read transaction still answers whether the file is open.
	if err := l.view("queue lengths", func(*bbolt.Tx) error { return nil }); err != nil {
		return sessionstore.QueueLengths{}, err
	}
	return sessionstore.QueueLengths{Probe: l.probes.jobs.Load(), Webhook: l.hooks.jobs.Load()}, nil
}
