package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

func testLeaseLocked(t *testing.T, st sessionstore.Store) {
	s, _ := create(t, st)
	before := time.Now()
	l := mustLease(t, st, s.ID, time.Second, 0)
	if l.SessionID != s.ID {
		t.Fatalf("Lease.SessionID: got %q, want %q", l.SessionID, s.ID)
	}
	if l.ExpiresAt.Before(before.Add(500*time.Millisecond)) || l.ExpiresAt.After(time.Now().Add(2*time.Second)) {
		t.Fatalf("Lease.ExpiresAt: got %v, want about %v", l.ExpiresAt, before.Add(time.Second))
	}
	_, err := st.AcquireLease(t.Context(), s.ID, time.Second, 1)
	wantErr(t, "AcquireLease while held", err, sessionstore.ErrLocked)
	// A refused acquisition reserves no parts.
	if got := mustSession(t, st, s.ID).NextPart; got != 1 {
		t.Fatalf("NextPart after a refused lease: got %d, want 1", got)
	}
	// Another upload is not affected.
	s2, _ := create(t, st)
	mustLease(t, st, s2.ID, time.Second, 0)
}

func testLeaseTakeover(t *testing.T, st sessionstore.Store) {
	s, _ := create(t, st)
	l1 := mustLease(t, st, s.ID, 40*time.Millisecond, 0)
	time.Sleep(80 * time.Millisecond)
	l2 := mustLease(t, st, s.ID, time.Second, 0)
	if l2.Token <= l1.Token {
		t.Fatalf("token after takeover: got %d, want > %d", l2.Token, l1.Token)
	}
	_, err := st.AcquireLease(t.Context(), s.ID, time.Second, 0)
	wantErr(t, "AcquireLease after takeover", err, sessionstore.ErrLocked)
}

func testLeaseRenew(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	s, _ := create(t, st)
	l := mustLease(t, st, s.ID, 150*time.Millisecond, 0)
	r, err := st.RenewLease(ctx, l, 2*time.Second)
	if err != nil {
		t.Fatalf("RenewLease: %v", err)
	}
	if r.Token != l.Token || r.SessionID != l.SessionID || !r.ExpiresAt.After(l.ExpiresAt) {
		t.Fatalf("renewed lease: got %+v, want token %d and expiry after %v", r, l.Token, l.ExpiresAt)
	}
	time.Sleep(200 * time.Millisecond) // past the first ttl, within the renewed one
	_, err = st.AcquireLease(ctx, s.ID, time.Second, 0)
	wantErr(t, "AcquireLease after renewal", err, sessionstore.ErrLocked)
	// The renewed lease still commits.
	mustCommit(t, st, r, sessionstore.Commit{ExpectOffset: 0, NewOffset: 10, Length: -1})

	// An expired lease cannot be renewed, taken over or not.
	s2, _ := create(t, st)
	l2 := mustLease(t, st, s2.ID, 30*time.Millisecond, 0)
	time.Sleep(60 * time.Millisecond)
	_, err = st.RenewLease(ctx, l2, time.Second)
	wantErr(t, "RenewLease of an expired lease", err, sessionstore.ErrLeaseLost)
	mustLease(t, st, s2.ID, time.Second, 0)
	_, err = st.RenewLease(ctx, l2, time.Second)
	wantErr(t, "RenewLease after takeover", err, sessionstore.ErrLeaseLost)

	// A released lease cannot be renewed.
	s3, _ := create(t, st)
	l3 := mustLease(t, st, s3.ID, time.Second, 0)
	if err := st.ReleaseLease(ctx, l3); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	_, err = st.RenewLease(ctx, l3, time.Second)
	wantErr(t, "RenewLease after release", err, sessionstore.ErrLeaseLost)
}

func testLeaseRelease(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	s, _ := create(t, st)
	l1 := mustLease(t, st, s.ID, time.Minute, 0)
	if err := st.ReleaseLease(ctx, l1); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	if err := st.ReleaseLease(ctx, l1); err != nil {
		t.Fatalf("second ReleaseLease: got %v, want nil", err)
	}
	l2 := mustLease(t, st, s.ID, time.Minute, 0) // free right away
	if l2.Token <= l1.Token {
		t.Fatalf("token after release: got %d, want > %d", l2.Token, l1.Token)
	}
	_, err := st.Commit(ctx, l1, sessionstore.Commit{NewOffset: 5, Length: -1})
	wantErr(t, "Commit with a released lease", err, sessionstore.ErrLeaseLost)
	// Releasing a stale lease leaves the current holder alone.
	if err := st.ReleaseLease(ctx, l1); err != nil {
		t.Fatalf("ReleaseLease(stale): got %v, want nil", err)
	}
	_, err = st.AcquireLease(ctx, s.ID, time.Minute, 0)
	wantErr(t, "AcquireLease after a stale release", err, sessionstore.ErrLocked)
	mustCommit(t, st, l2, sessionstore.Commit{NewOffset: 5, Length: -1})
}

// testSessionLeased: Session tells whether a lease is held, as offset
// retrieval needs it to wait for a write in flight.
func testSessionLeased(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	s, _ := create(t, st)
	if got := mustSession(t, st, s.ID); got.Leased {
		t.Fatalf("Leased of a new session: got true, want false")
	}
	l := mustLease(t, st, s.ID, time.Minute, 0)
	if got := mustSession(t, st, s.ID); !got.Leased {
		t.Fatalf("Leased while a lease is held: got false, want true")
	}
	if err := st.ReleaseLease(ctx, l); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	if got := mustSession(t, st, s.ID); got.Leased {
		t.Fatalf("Leased after the release: got true, want false")
	}
	mustLease(t, st, s.ID, 50*time.Millisecond, 0)
	time.Sleep(100 * time.Millisecond)
	if got := mustSession(t, st, s.ID); got.Leased {
		t.Fatalf("Leased after the lease expired: got true, want false")
	}
}

func testPartReservation(t *testing.T, st sessionstore.Store) {
	s, _ := create(t, st)
	next := int32(1)
	var prevToken int64
	for i, n := range []int32{3, 0, 5, 1} {
		l := mustLease(t, st, s.ID, time.Second, n)
		if l.Parts != n {
			t.Fatalf("lease %d: got %d parts, want %d", i, l.Parts, n)
		}
		if n > 0 && l.FirstPart != next {
			t.Fatalf("lease %d: got FirstPart %d, want %d", i, l.FirstPart, next)
		}
		if l.Token <= prevToken {
			t.Fatalf("lease %d: got token %d, want > %d", i, l.Token, prevToken)
		}
		prevToken = l.Token
		next += n
		if got := mustSession(t, st, s.ID).NextPart; got != next {
			t.Fatalf("NextPart after lease %d: got %d, want %d", i, got, next)
		}
		// The lease carries the session as stored, reservation included.
		equalSession(t, fmt.Sprintf("session with lease %d", i), l.Session, mustSession(t, st, s.ID))
		if err := st.ReleaseLease(t.Context(), l); err != nil {
			t.Fatalf("ReleaseLease: %v", err)
		}
	}
	// A takeover never reuses the reservation of the lease it replaced.
	l := mustLease(t, st, s.ID, 30*time.Millisecond, 4)
	time.Sleep(60 * time.Millisecond)
	l2 := mustLease(t, st, s.ID, time.Second, 4)
	if l2.FirstPart < l.FirstPart+l.Parts {
		t.Fatalf("takeover reservation %d+%d overlaps %d+%d", l2.FirstPart, l2.Parts, l.FirstPart, l.Parts)
	}
}

func testPartsExhausted(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	s, _ := create(t, st)
	l := mustLease(t, st, s.ID, time.Second, sessionstore.MaxPartNumber-1)
	if l.FirstPart != 1 {
		t.Fatalf("FirstPart: got %d, want 1", l.FirstPart)
	}
	if err := st.ReleaseLease(ctx, l); err != nil {
		t.Fatal(err)
	}
	_, err := st.AcquireLease(ctx, s.ID, time.Second, 2)
	wantErr(t, "AcquireLease past MaxPartNumber", err, sessionstore.ErrPartsExhausted)
	// The refusal took no lease and reserved nothing: the last part fits.
	l = mustLease(t, st, s.ID, time.Second, 1)
	if l.FirstPart != sessionstore.MaxPartNumber {
		t.Fatalf("last part: got %d, want %d", l.FirstPart, sessionstore.MaxPartNumber)
	}
	if err := st.ReleaseLease(ctx, l); err != nil {
		t.Fatal(err)
	}
	_, err = st.AcquireLease(ctx, s.ID, time.Second, 1)
	wantErr(t, "AcquireLease with all parts used", err, sessionstore.ErrPartsExhausted)
	// A lease without parts (final commit, tail only) is still possible.
	mustLease(t, st, s.ID, time.Second, 0)
}
