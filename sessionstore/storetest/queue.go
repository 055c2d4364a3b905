package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// completed creates an upload and completes it, which enqueues one probe
// job; it returns the asset id.
func completed(t *testing.T, st sessionstore.Store) string {
	t.Helper()
	s, _ := create(t, st)
	l := mustLease(t, st, s.ID, time.Second, 0)
	mustCommit(t, st, l, sessionstore.Commit{NewOffset: s.Length, Length: -1, Complete: true, SHA256: "ff"})
	return s.AssetID
}

func mustClaim(t *testing.T, st sessionstore.Store, consumer string, block, reclaim time.Duration) sessionstore.ProbeJob {
	t.Helper()
	j, err := st.ClaimProbe(t.Context(), consumer, block, reclaim)
	if err != nil {
		t.Fatalf("ClaimProbe(%s): %v", consumer, err)
	}
	return j
}

func wantEmpty(t *testing.T, st sessionstore.Store, what, consumer string, reclaim time.Duration) {
	t.Helper()
	j, err := st.ClaimProbe(t.Context(), consumer, 10*time.Millisecond, reclaim)
	if !errors.Is(err, sessionstore.ErrEmpty) {
		t.Fatalf("%s: got job %+v, error %v; want ErrEmpty", what, j, err)
	}
}

func testKeys(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	k1 := sessionstore.Key{ID: newID(), Account: "acme", Hash: newID(), Prefix: "rk_live_ab", CreatedAt: now()}
	k2 := sessionstore.Key{ID: newID(), Account: "globex", Hash: newID(), Prefix: "rk_live_cd", CreatedAt: now().Add(-time.Hour)}
	for _, k := range []sessionstore.Key{k1, k2} {
		if err := st.CreateKey(ctx, k); err != nil {
			t.Fatalf("CreateKey(%s): %v", k.ID, err)
		}
	}
	equalKey := func(what string, got, want sessionstore.Key) {
		t.Helper()
		if got.ID != want.ID || got.Account != want.Account || got.Hash != want.Hash ||
			got.Prefix != want.Prefix || !sameSecond(got.CreatedAt, want.CreatedAt) || got.Revoked != want.Revoked {
			t.Fatalf("%s: got %+v, want %+v", what, got, want)
		}
	}
	got, err := st.KeyByHash(ctx, k1.Hash)
	if err != nil {
		t.Fatalf("KeyByHash: %v", err)
	}
	equalKey("KeyByHash", got, k1)

	dupID := sessionstore.Key{ID: k1.ID, Account: "x", Hash: newID(), CreatedAt: now()}
	wantErr(t, "CreateKey with a taken id", st.CreateKey(ctx, dupID), sessionstore.ErrExists)
	dupHash := sessionstore.Key{ID: newID(), Account: "x", Hash: k1.Hash, CreatedAt: now()}
	wantErr(t, "CreateKey with a taken hash", st.CreateKey(ctx, dupHash), sessionstore.ErrExists)
	_, err = st.KeyByHash(ctx, dupID.Hash)
	wantErr(t, "KeyByHash of a refused key", err, sessionstore.ErrNotFound)

	if err := st.RevokeKey(ctx, k1.ID); err != nil {
		t.Fatalf("RevokeKey: %v", err)
	}
	_, err = st.KeyByHash(ctx, k1.Hash)
	wantErr(t, "KeyByHash of a revoked key", err, sessionstore.ErrNotFound)
	got, err = st.KeyByHash(ctx, k2.Hash)
	if err != nil {
		t.Fatalf("KeyByHash(other key after revoke): %v", err)
	}
	equalKey("other key after revoke", got, k2)

	keys, err := st.Keys(ctx)
	if err != nil {
		t.Fatalf("Keys: %v", err)
	}
	mine := map[string]sessionstore.Key{}
	for _, k := range keys {
		if k.ID == k1.ID || k.ID == k2.ID || k.ID == dupHash.ID {
			mine[k.ID] = k
		}
	}
	if len(mine) != 2 {
		t.Fatalf("Keys: got %d of ours (%v), want 2", len(mine), mine)
	}
	revoked := k1
	revoked.Revoked = true
	equalKey("Keys: revoked key", mine[k1.ID], revoked)
	equalKey("Keys: live key", mine[k2.ID], k2)
}

// testKeyRevocations: a key revoked through one store reaches the
// watchers of the stores that share its data, and a watcher stops when its
// context ends. The watcher is on a peer of the revoking store: another
// node on the same Redis, or for the embedded store (one node) the
// revoking store itself.
func testKeyRevocations(t *testing.T, st sessionstore.Store, fleet Fleet) {
	watched := fleet.Peer(t, st)
	ctx, cancel := context.WithCancel(t.Context())
	got := make(chan string, 64)
	returned := make(chan error, 1)
	go func() {
		returned <- watched.WatchKeyRevocations(ctx, func(hash string) { got <- hash })
	}()
	// The subscription starts asynchronously: revoke fresh keys until one
	// arrives (the first revocation after it started must).
	delivered := false
	for attempt := 0; attempt < 20 && !delivered; attempt++ {
		k := sessionstore.Key{ID: newID(), Account: "acme", Hash: newID(), CreatedAt: now()}
		if err := st.CreateKey(t.Context(), k); err != nil {
			t.Fatalf("CreateKey: %v", err)
		}
		if err := st.RevokeKey(t.Context(), k.ID); err != nil {
			t.Fatalf("RevokeKey: %v", err)
		}
		timeout := time.After(250 * time.Millisecond)
	wait:
		for {
			select {
			case h := <-got:
				if h == k.Hash {
					delivered = true
					break wait
				}
			case <-timeout:
				break wait
			}
		}
	}
	if !delivered {
		t.Fatal("WatchKeyRevocations: got no revoked key's hash after 20 revocations, want each one")
	}
	cancel()
	select {
	case err := <-returned:
		if err != nil {
			t.Errorf("WatchKeyRevocations after cancel: got %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("WatchKeyRevocations still running 5s after its context ended")
	}
}

func testProbeEmpty(t *testing.T, st sessionstore.Store) {
	start := time.Now()
	_, err := st.ClaimProbe(t.Context(), "c1", 40*time.Millisecond, time.Minute)
	wantErr(t, "ClaimProbe on an empty queue", err, sessionstore.ErrEmpty)
	if d := time.Since(start); d < 30*time.Millisecond || d > 2*time.Second {
		t.Fatalf("ClaimProbe(block 40ms) on an empty queue returned after %v, want about 40ms", d)
	}
}

func testProbeClaimAck(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	id := completed(t, st)
	j := mustClaim(t, st, "c1", time.Second, time.Minute)
	if j.AssetID != id || j.Attempts != 0 || j.ID == "" {
		t.Fatalf("claimed job: got %+v, want asset %s, attempts 0, an id", j, id)
	}
	if got := mustAsset(t, st, id).DurationSeconds; got != "" {
		t.Fatalf("DurationSeconds before ack: got %q, want empty", got)
	}
	if err := st.AckProbe(ctx, j, "3782.413"); err != nil {
		t.Fatalf("AckProbe: %v", err)
	}
	a := mustAsset(t, st, id)
	if a.DurationSeconds != "3782.413" || a.State != sessionstore.StateReady {
		t.Fatalf("asset after AckProbe: got duration %q state %q, want 3782.413 ready", a.DurationSeconds, a.State)
	}
	// An acked job is gone, even for a consumer that reclaims eagerly.
	time.Sleep(20 * time.Millisecond)
	wantEmpty(t, st, "ClaimProbe after ack", "c2", time.Millisecond)

	// Non-media: ack with "" leaves the duration empty.
	id2 := completed(t, st)
	j = mustClaim(t, st, "c1", time.Second, time.Minute)
	if j.AssetID != id2 {
		t.Fatalf("second job: got asset %s, want %s", j.AssetID, id2)
	}
	if err := st.AckProbe(ctx, j, ""); err != nil {
		t.Fatalf("AckProbe(non-media): %v", err)
	}
	if got := mustAsset(t, st, id2).DurationSeconds; got != "" {
		t.Fatalf("DurationSeconds of non-media: got %q, want empty", got)
	}
}

func testProbeWakesBlockedClaim(t *testing.T, st sessionstore.Store) {
	type result struct {
		job sessionstore.ProbeJob
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		j, err := st.ClaimProbe(t.Context(), "waiter", 5*time.Second, time.Minute)
		done <- result{j, err, time.Now()}
	}()
	time.Sleep(50 * time.Millisecond) // let the claimer block
	id := completed(t, st)
	enqueued := time.Now()
	select {
	case r := <-done:
		if r.err != nil || r.job.AssetID != id {
			t.Fatalf("blocked ClaimProbe: got %+v, %v; want asset %s", r.job, r.err, id)
		}
		if d := r.at.Sub(enqueued); d > time.Second {
			t.Fatalf("blocked ClaimProbe woke %v after the job was enqueued, want < 1s", d)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("blocked ClaimProbe did not wake up when a job was enqueued")
	}
}

func testProbeRetryDelay(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	id := completed(t, st)
	j := mustClaim(t, st, "c1", time.Second, time.Minute)
	const delay = 400 * time.Millisecond
	retried := time.Now()
	if err := st.RetryProbe(ctx, j, delay, "ffprobe: exit 1"); err != nil {
		t.Fatalf("RetryProbe: %v", err)
	}
	// Not ready before the delay, and not reclaimable as a pending job.
	time.Sleep(30 * time.Millisecond)
	wantEmpty(t, st, "ClaimProbe before the retry delay", "c2", 5*time.Millisecond)
	time.Sleep(delay + 50*time.Millisecond - time.Since(retried))
	j2 := mustClaim(t, st, "c2", 500*time.Millisecond, time.Minute)
	if j2.AssetID != id || j2.Attempts != 1 {
		t.Fatalf("retried job: got %+v, want asset %s, attempts 1", j2, id)
	}
	// A zero delay is ready at once and counts again.
	if err := st.RetryProbe(ctx, j2, 0, "again"); err != nil {
		t.Fatalf("RetryProbe(0): %v", err)
	}
	j3 := mustClaim(t, st, "c1", 500*time.Millisecond, time.Minute)
	if j3.AssetID != id || j3.Attempts != 2 {
		t.Fatalf("twice retried job: got %+v, want asset %s, attempts 2", j3, id)
	}
	if err := st.AckProbe(ctx, j3, "1.000"); err != nil {
		t.Fatalf("AckProbe: %v", err)
	}
	wantEmpty(t, st, "ClaimProbe after ack", "c1", time.Millisecond)
}

func testProbeReclaim(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	id := completed(t, st)
	const reclaim = 150 * time.Millisecond
	ja := mustClaim(t, st, "dead-consumer", time.Second, reclaim)
	// Not handed out again while the first consumer may still be working.
	wantEmpty(t, st, "ClaimProbe right after another consumer claimed", "live-consumer", reclaim)
	time.Sleep(reclaim + 40*time.Millisecond)
	jb := mustClaim(t, st, "live-consumer", 500*time.Millisecond, reclaim)
	if jb.AssetID != id || jb.AssetID != ja.AssetID {
		t.Fatalf("reclaimed job: got %+v, want asset %s", jb, id)
	}
	if err := st.AckProbe(ctx, jb, "2.500"); err != nil {
		t.Fatalf("AckProbe of the reclaimed job: %v", err)
	}
	if got := mustAsset(t, st, id).DurationSeconds; got != "2.500" {
		t.Fatalf("DurationSeconds: got %q, want 2.500", got)
	}
	time.Sleep(reclaim + 10*time.Millisecond)
	wantEmpty(t, st, "ClaimProbe after the reclaimed job was acked", "third", reclaim)
}

func testProbeDead(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	id := completed(t, st)
	j := mustClaim(t, st, "c1", time.Second, time.Minute)
	if err := st.RetryProbe(ctx, j, 0, "first failure"); err != nil {
		t.Fatalf("RetryProbe: %v", err)
	}
	j = mustClaim(t, st, "c1", time.Second, time.Minute)
	const reason = "ffprobe: Invalid data found when processing input"
	if err := st.DeadProbe(ctx, j, reason); err != nil {
		t.Fatalf("DeadProbe: %v", err)
	}
	time.Sleep(20 * time.Millisecond)
	wantEmpty(t, st, "ClaimProbe after DeadProbe", "c2", time.Millisecond)
	dead, err := st.DeadProbes(ctx)
	if err != nil {
		t.Fatalf("DeadProbes: %v", err)
	}
	i := slices.IndexFunc(dead, func(d sessionstore.DeadProbe) bool { return d.AssetID == id })
	if i < 0 {
		t.Fatalf("DeadProbes: got %+v, want an entry for %s", dead, id)
	}
	if want := (sessionstore.DeadProbe{AssetID: id, Attempts: 1, Reason: reason}); dead[i] != want {
		t.Fatalf("dead probe: got %+v, want %+v", dead[i], want)
	}
	if got := mustAsset(t, st, id).DurationSeconds; got != "" {
		t.Fatalf("DurationSeconds of a dead probe: got %q, want empty", got)
	}
}

func testConcurrentCommit(t *testing.T, st sessionstore.Store) {
	s, _ := create(t, st)
	const n = 8
	ok, conflict := race(t, n, sessionstore.ErrOffsetConflict, func(i int) error {
		ctx := t.Context()
		// Every worker waits for the lease, then commits the same
		// ExpectOffset: the lease serialises them, the offset CAS lets
		// only the first one through.
		deadline := time.Now().Add(3 * time.Second)
		var l sessionstore.Lease
		for {
			var err error
			l, err = st.AcquireLease(ctx, s.ID, time.Second, 1)
			if err == nil {
				break
			}
			if !errors.Is(err, sessionstore.ErrLocked) || time.Now().After(deadline) {
				return fmt.Errorf("acquire lease: %w", err)
			}
			time.Sleep(time.Millisecond)
		}
		defer func() {
			if err := st.ReleaseLease(ctx, l); err != nil {
				t.Errorf("worker %d: ReleaseLease: %v", i, err)
			}
		}()
		_, err := st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: 0, NewOffset: 10, Length: -1,
			HashState: []byte{byte(i)},
			Parts:     []sessionstore.Part{{Number: l.FirstPart, ETag: "w", Size: 10}}})
		if err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	})
	if ok != 1 || conflict != n-1 {
		t.Fatalf("concurrent commits: got %d ok, %d conflicts; want 1 ok, %d conflicts", ok, conflict, n-1)
	}
	got := mustSession(t, st, s.ID)
	parts, err := st.Parts(t.Context(), s.ID)
	if got.Offset != 10 || err != nil || len(parts) != 1 {
		t.Fatalf("after concurrent commits: got offset %d, parts %v (%v); want 10 and one part", got.Offset, parts, err)
	}
	if got.NextPart != n+1 {
		t.Fatalf("NextPart after %d leases of one part: got %d, want %d", n, got.NextPart, n+1)
	}
}

// testConcurrentAcquire: of many simultaneous acquisitions of a free lease,
// exactly one wins.
func testConcurrentAcquire(t *testing.T, st sessionstore.Store) {
	s, _ := create(t, st)
	const n = 8
	won, locked := race(t, n, sessionstore.ErrLocked, func(int) error {
		_, err := st.AcquireLease(t.Context(), s.ID, 5*time.Second, 2)
		return err
	})
	if won != 1 || locked != n-1 {
		t.Fatalf("concurrent acquisitions: got %d won, %d locked; want 1 and %d", won, locked, n-1)
	}
	if got := mustSession(t, st, s.ID).NextPart; got != 3 {
		t.Fatalf("NextPart after one winning lease of 2 parts: got %d, want 3", got)
	}
}

// race runs fn(0..n-1) in n goroutines released at once and counts the
// calls that succeeded and those that failed with want; any other error
// fails the test.
func race(t *testing.T, n int, want error, fn func(i int) error) (ok, wanted int32) {
	t.Helper()
	var nOK, nWant atomic.Int32
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			switch err := fn(i); {
			case err == nil:
				nOK.Add(1)
			case errors.Is(err, want):
				nWant.Add(1)
			default:
				t.Errorf("worker %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	return nOK.Load(), nWant.Load()
}
