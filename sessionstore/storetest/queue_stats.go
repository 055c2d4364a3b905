package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// probeQueueStatser is the stores' answer for /metrics (not part of
// sessionstore.Store).
type probeQueueStatser interface {
	ProbeQueueStats(ctx context.Context) (sessionstore.ProbeQueueStats, error)
}

// testProbeQueueStats: a completed upload's job counts in Jobs (claimed
// too) with an Oldest no later than now, and moves to Dead when parked.
// Deltas only: a store may keep other subtests' jobs.
func testProbeQueueStats(t *testing.T, st sessionstore.Store) {
	q, ok := st.(probeQueueStatser)
	if !ok {
		t.Skipf("%T has no ProbeQueueStats", st)
	}
	stats := func() sessionstore.ProbeQueueStats {
		t.Helper()
		s, err := q.ProbeQueueStats(t.Context())
		if err != nil {
			t.Fatalf("ProbeQueueStats: %v", err)
		}
		return s
	}
	before := stats()
	completed(t, st)
	queued := stats()
	if queued.Jobs != before.Jobs+1 || queued.Dead != before.Dead {
		t.Fatalf("after a completion: got %+v, before %+v; want one job more", queued, before)
	}
	if queued.Oldest.IsZero() || queued.Oldest.After(time.Now().Add(time.Second)) {
		t.Fatalf("oldest job: got %v, want a time up to now", queued.Oldest)
	}
	j := mustClaim(t, st, "c1", time.Second, time.Minute)
	if claimed := stats(); claimed.Jobs != queued.Jobs {
		t.Fatalf("after a claim: got %d jobs, want %d (a claimed job is still queued)", claimed.Jobs, queued.Jobs)
	}
	if err := st.DeadProbe(t.Context(), j, "not media"); err != nil {
		t.Fatalf("DeadProbe: %v", err)
	}
	if dead := stats(); dead.Jobs != before.Jobs || dead.Dead != before.Dead+1 {
		t.Fatalf("after DeadProbe: got %+v, before %+v; want the job moved to the dead letters", dead, before)
	}
}

// queueLengther is the stores' queue lengths for /metrics (not part of
// sessionstore.Store).
type queueLengther interface {
	QueueLengths(ctx context.Context) (sessionstore.QueueLengths, error)
}

// testQueueLengths: a completed upload's probe job and a queued delivery
// count until they are settled, claimed or scheduled for a retry
// included. Deltas only: a store may keep other subtests' jobs.
func testQueueLengths(t *testing.T, st sessionstore.Store) {
	q, ok := st.(queueLengther)
	if !ok {
		t.Skipf("%T has no QueueLengths", st)
	}
	ctx := t.Context()
	lengths := func() sessionstore.QueueLengths {
		t.Helper()
		n, err := q.QueueLengths(ctx)
		if err != nil {
			t.Fatalf("QueueLengths: %v", err)
		}
		return n
	}
	before := lengths()
	completed(t, st)
	account := newID()
	if err := st.CreateWebhook(ctx, sessionstore.Webhook{ID: newID(), Account: account, URL: "http://127.0.0.1:1/",
		Events: sessionstore.EventTypes, Secret: "s", CreatedAt: time.Now()}); err != nil {
		t.Fatalf("CreateWebhook: %v", err)
	}
	ev := sessionstore.WebhookEvent{ID: newID(), Type: sessionstore.EventAssetCreated, Time: time.Now()}
	if _, err := st.EnqueueWebhookEvent(ctx, account, ev); err != nil {
		t.Fatalf("EnqueueWebhookEvent: %v", err)
	}
	want := sessionstore.QueueLengths{Probe: before.Probe + 1, Webhook: before.Webhook + 1}
	if got := lengths(); got != want {
		t.Fatalf("after a completion and an event: got %+v, want %+v", got, want)
	}
	j := mustClaim(t, st, "c1", time.Second, time.Minute)
	if err := st.RetryProbe(ctx, j, time.Hour, "test"); err != nil {
		t.Fatalf("RetryProbe: %v", err)
	}
	wj, err := st.ClaimWebhook(ctx, "c1", time.Second, time.Minute)
	if err != nil {
		t.Fatalf("ClaimWebhook: %v", err)
	}
	if got := lengths(); got != want {
		t.Fatalf("with a probe retry scheduled and a delivery claimed: got %+v, want %+v", got, want)
	}
	if err := st.SettleWebhook(ctx, wj, sessionstore.WebhookOutcome{State: sessionstore.DeliveryDelivered, Status: 204}); err != nil {
		t.Fatalf("SettleWebhook: %v", err)
	}
	want.Webhook--
	if got := lengths(); got != want {
		t.Fatalf("after the delivery was settled: got %+v, want %+v", got, want)
	}
}
