package upload

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// TestTakeFenced: a request that read the upload's head fence before an
// offset retrieval (OffsetSession) is refused its lease (ErrFenced), and
// takes nothing over from the write that holds it: that write's body is
// not cut. A request that read the fence after is let through.
func TestTakeFenced(t *testing.T) {
	onStores(t, func(t *testing.T, nodes fleet) {
		a, b := nodes(t, quick)
		id := newUpload(t, a.store)
		s, err := a.store.Session(t.Context(), id)
		if err != nil {
			t.Fatalf("Session: %v", err)
		}
		head, err := b.store.OffsetSession(t.Context(), id)
		if err != nil {
			t.Fatalf("OffsetSession: %v", err)
		}
		done := write(t, b, id)
		_, err = a.l.Take(t.Context(), id, 1, false, s.HeadFence)
		if !errors.Is(err, sessionstore.ErrFenced) {
			t.Fatalf("Take with the fence read before the HEAD: got %v, want ErrFenced", err)
		}
		select {
		case cause := <-done:
			t.Fatalf("the write holding the upload was cut (%v) by a fenced request", cause)
		default:
		}
		if _, err := a.l.Take(t.Context(), id, 1, false, head.HeadFence); err != nil {
			t.Fatalf("Take with the fence read after the HEAD (takes the write over): %v", err)
		}
		if cause := <-done; !errors.Is(cause, ErrTakenOver) {
			t.Fatalf("the write was cut with %v, want ErrTakenOver", cause)
		}
	})
}

// TestSettle: offset retrieval on a held upload takes the write over and
// lets go of the lease at once; a holder without a body (a completion,
// the janitor) is waited for up to TakeoverWait and keeps the upload.
func TestSettle(t *testing.T) {
	onStores(t, func(t *testing.T, nodes fleet) {
		a, b := nodes(t, LeaseConfig{TTL: 3 * time.Second, TakeoverWait: 300 * time.Millisecond})
		id := newUpload(t, a.store)
		done := write(t, a, id)
		if err := b.l.Settle(t.Context(), id); err != nil {
			t.Fatalf("Settle on a write: %v", err)
		}
		if cause := <-done; !errors.Is(cause, ErrTakenOver) {
			t.Fatalf("the write was cut with %v, want ErrTakenOver", cause)
		}
		if s, err := a.store.Session(t.Context(), id); err != nil || s.Leased {
			t.Fatalf("after Settle: leased %v (%v), want the lease let go", s.Leased, err)
		}

		l, err := a.l.Take(t.Context(), id, 0, false, NoFence)
		if err != nil {
			t.Fatalf("Take: %v", err)
		}
		_, _, release := a.l.Hold(t.Context(), l)
		defer release()
		start := time.Now()
		if err := b.l.Settle(t.Context(), id); err != nil {
			t.Fatalf("Settle on a holder without a body: %v", err)
		}
		if took := time.Since(start); took < 300*time.Millisecond {
			t.Fatalf("Settle on a holder without a body returned after %v, before the takeover wait", took)
		}
		if s, err := a.store.Session(t.Context(), id); err != nil || !s.Leased {
			t.Fatalf("after Settle: leased %v (%v), want the holder to keep it", s.Leased, err)
		}

		if _, err := a.store.DeleteUpload(t.Context(), id); err != nil {
			t.Fatalf("DeleteUpload: %v", err)
		}
		if err := b.l.Settle(t.Context(), id); !errors.Is(err, sessionstore.ErrNotFound) {
			t.Fatalf("Settle on a deleted upload: got %v, want ErrNotFound", err)
		}
	})
}

// TestOrphanDropped: a lease acquired in the store that no request holds
// (its answer was lost) is dropped by its node while a newer request
// keeps asking, and the newer request gets the upload within its wait.
func TestOrphanDropped(t *testing.T) {
	onStores(t, func(t *testing.T, nodes fleet) {
		a, b := nodes(t, LeaseConfig{TTL: time.Minute, TakeoverWait: 2 * time.Second})
		id := newUpload(t, a.store)
		if _, err := a.store.AcquireLease(t.Context(), id, time.Minute, 0); err != nil {
			t.Fatalf("AcquireLease: %v", err)
		}
		if _, err := b.l.Take(t.Context(), id, 0, false, NoFence); err != nil {
			t.Fatalf("Take of an orphaned lease: %v", err)
		}
	})
}

// TestHoldLosesLease: a held lease that another request took (it
// expired meanwhile) cancels the holder's context with ErrLeaseLost as
// the cause, and is counted.
func TestHoldLosesLease(t *testing.T) {
	onStores(t, func(t *testing.T, nodes fleet) {
		a, _ := nodes(t, LeaseConfig{TTL: 300 * time.Millisecond, TakeoverWait: time.Second})
		id := newUpload(t, a.store)
		l, err := a.l.Take(t.Context(), id, 0, false, NoFence)
		if err != nil {
			t.Fatalf("Take: %v", err)
		}
		_, hctx, release := a.l.Hold(t.Context(), l)
		defer release()
		// Gone behind the holder's back, then taken by someone else.
		if err := a.store.ReleaseLease(t.Context(), l); err != nil {
			t.Fatalf("ReleaseLease: %v", err)
		}
		if _, err := a.store.AcquireLease(t.Context(), id, time.Minute, 0); err != nil {
			t.Fatalf("AcquireLease: %v", err)
		}
		<-hctx.Done()
		if cause := context.Cause(hctx); !errors.Is(cause, sessionstore.ErrLeaseLost) {
			t.Fatalf("holder's context canceled with %v, want ErrLeaseLost", cause)
		}
		if got := a.obs.lost.Load(); got != 1 {
			t.Fatalf("leases lost: got %d, want 1", got)
		}
	})
}

// TestHeadSince: a HEAD that began after a request began is seen by it;
// one that began before is not.
func TestHeadSince(t *testing.T) {
	l := NewLeases(nil, quick, nil, &counts{})
	before := time.Now()
	time.Sleep(time.Millisecond)
	l.HeadBegan("u1")
	after := time.Now()
	if !l.HeadSince("u1", before) {
		t.Fatal("HeadSince(a request that began before the HEAD): got false, want true")
	}
	if l.HeadSince("u1", after) || l.HeadSince("u2", before) {
		t.Fatal("HeadSince(a request after the HEAD, or another upload): got true, want false")
	}
}
