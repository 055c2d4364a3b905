package bolt

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/roughy/ingest/sessionstore"
)

// TestLocalQueueCounts: the queue lengths /metrics reads are kept counts
// that match the buckets, for both queues, a write rolled back out of a
// shared transaction counts nothing, and a reopened file is counted again.
func TestLocalQueueCounts(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "roughy.db")
	l, err := New(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	now := time.Now()
	for i := range 3 {
		completeUpload(t, l, fmt.Sprintf("s%d", i), now)
	}
	if err := l.CreateWebhook(ctx, sessionstore.Webhook{ID: "h", Account: "acme", Events: []string{"asset.ready"}}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := l.EnqueueWebhookEvent(ctx, "acme", sessionstore.WebhookEvent{ID: fmt.Sprintf("ev%d", i), Type: "asset.ready", Time: now}); err != nil {
			t.Fatal(err)
		}
	}
	// Queued jobs in a write that fails are rolled back: not counted.
	errRefused := errors.New("refused")
	if err := l.update("test", func(tx *bbolt.Tx) error {
		if err := l.probes.put(tx, now, localProbeRecord{AssetID: "x"}); err != nil {
			return err
		}
		if err := l.hooks.put(tx, now, localHookRecord{HookID: "h"}); err != nil {
			return err
		}
		return errRefused
	}); !errors.Is(err, errRefused) {
		t.Fatalf("failing write: got %v", err)
	}
	job, err := l.ClaimProbe(ctx, "c", time.Second, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.DeadProbe(ctx, job, "not media"); err != nil {
		t.Fatal(err)
	}
	// A retry is the same job again; a delivery removes one.
	settleHookJob(t, l, sessionstore.WebhookOutcome{State: sessionstore.DeliveryRetrying, RetryIn: time.Hour})
	settleHookJob(t, l, sessionstore.WebhookOutcome{State: sessionstore.DeliveryDelivered, Status: 200})
	checkQueueCounts(t, l, "before reopen")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l, err = New(path); err != nil {
		t.Fatal(err)
	}
	checkQueueCounts(t, l, "after reopen")
}

// completeUpload creates upload id and completes it, which queues its
// probe job.
func completeUpload(t *testing.T, l *Store, id string, now time.Time) {
	t.Helper()
	ctx := t.Context()
	if err := l.CreateUpload(ctx, sessionstore.Session{ID: id, AssetID: id, Account: "acme", Length: 1, CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		sessionstore.Asset{ID: id, SessionID: id, Account: "acme", State: sessionstore.StateUploading, SizeBytes: 1}); err != nil {
		t.Fatal(err)
	}
	ls, err := l.AcquireLease(ctx, id, time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Commit(ctx, ls, sessionstore.Commit{NewOffset: 1, Length: -1, Complete: true}); err != nil {
		t.Fatal(err)
	}
}

// settleHookJob claims the next ready webhook job and settles it as out.
func settleHookJob(t *testing.T, l *Store, out sessionstore.WebhookOutcome) {
	t.Helper()
	job, err := l.ClaimWebhook(t.Context(), "c", time.Second, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SettleWebhook(t.Context(), job, out); err != nil {
		t.Fatal(err)
	}
}

// checkQueueCounts wants 2 probe jobs, 1 dead one and 1 webhook job, in
// the kept counts and in the buckets.
func checkQueueCounts(t *testing.T, l *Store, when string) {
	t.Helper()
	st, err := l.ProbeQueueStats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	q, err := l.QueueLengths(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var jobs, dead, hookJobs int64
	err = l.db.View(func(tx *bbolt.Tx) error {
		jobs, dead = boltCount(tx.Bucket(boltBucketProbe)), boltCount(tx.Bucket(boltBucketDead))
		hookJobs = boltCount(tx.Bucket(boltBucketHookQueue))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("probe %d, dead %d, queue lengths %d and %d (buckets: %d, %d, %d)",
		st.Jobs, st.Dead, q.Probe, q.Webhook, jobs, dead, hookJobs)
	if want := "probe 2, dead 1, queue lengths 2 and 1 (buckets: 2, 1, 1)"; got != want {
		t.Fatalf("%s: got %s; want %s", when, got, want)
	}
}
