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
