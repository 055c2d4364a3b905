package storetest

import (
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// testHeadFence: an offset retrieval (OffsetSession, on any node) fences
// off the lease acquisitions of every request that read the upload
// before it, whether the lease is free or held by another request, while
// the requests that read it after are let through.
func testHeadFence(t *testing.T, st sessionstore.Store, fleet Fleet) {
	ctx := t.Context()
	s, _ := create(t, st)
	before := mustSession(t, st, s.ID).HeadFence
	l, err := st.AcquireLeaseFenced(ctx, s.ID, time.Minute, 1, before)
	if err != nil {
		t.Fatalf("AcquireLeaseFenced with the fence as read: %v", err)
	}
	if err := st.ReleaseLease(ctx, l); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}

	peer := fleet.Peer(t, st)
	head, err := peer.OffsetSession(ctx, s.ID)
	if err != nil {
		t.Fatalf("OffsetSession: %v", err)
	}
	if head.ID != s.ID || head.Leased || head.HeadFence <= before {
		t.Fatalf("OffsetSession: got id %q leased %v fence %d, want %q, false, above %d", head.ID, head.Leased, head.HeadFence, s.ID, before)
	}
	if got := mustSession(t, st, s.ID).HeadFence; got != head.HeadFence {
		t.Fatalf("Session's HeadFence after OffsetSession: got %d, want %d", got, head.HeadFence)
	}
	next := mustSession(t, st, s.ID).NextPart
	_, err = st.AcquireLeaseFenced(ctx, s.ID, time.Minute, 1, before)
	wantErr(t, "AcquireLeaseFenced with a fence read before OffsetSession", err, sessionstore.ErrFenced)
	if got := mustSession(t, st, s.ID); got.Leased || got.NextPart != next {
		t.Fatalf("after a fenced acquisition: leased %v, next part %d; want false, %d (nothing changes)", got.Leased, got.NextPart, next)
	}

	// A request that read the upload after the retrieval is let through.
	l, err = st.AcquireLeaseFenced(ctx, s.ID, time.Minute, 0, head.HeadFence)
	if err != nil {
		t.Fatalf("AcquireLeaseFenced with the fence read after OffsetSession: %v", err)
	}
	if l.Session.HeadFence != head.HeadFence {
		t.Fatalf("Lease.Session.HeadFence: got %d, want %d", l.Session.HeadFence, head.HeadFence)
	}
	// The fence is checked before the lease: an older request lets go
	// rather than taking over the newer one.
	_, err = st.AcquireLeaseFenced(ctx, s.ID, time.Minute, 0, before)
	wantErr(t, "AcquireLeaseFenced with an old fence on a held upload", err, sessionstore.ErrFenced)
	held, err := peer.OffsetSession(ctx, s.ID)
	if err != nil {
		t.Fatalf("OffsetSession while leased: %v", err)
	}
	if !held.Leased || held.HeadFence <= head.HeadFence {
		t.Fatalf("OffsetSession while leased: leased %v fence %d; want true, above %d", held.Leased, held.HeadFence, head.HeadFence)
	}
	if err := st.ReleaseLease(ctx, l); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	// Offset retrieval's own takeover, a DELETE and the janitor take the
	// lease without a fence.
	l = mustLease(t, st, s.ID, time.Minute, 0)
	if err := st.ReleaseLease(ctx, l); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}

	_, err = st.OffsetSession(ctx, newID())
	wantErr(t, "OffsetSession(unknown)", err, sessionstore.ErrNotFound)
	_, err = st.AcquireLeaseFenced(ctx, newID(), time.Minute, 0, 0)
	wantErr(t, "AcquireLeaseFenced(unknown)", err, sessionstore.ErrNotFound)
	if _, err := st.DeleteUpload(ctx, s.ID); err != nil {
		t.Fatalf("DeleteUpload: %v", err)
	}
	_, err = st.OffsetSession(ctx, s.ID)
	wantErr(t, "OffsetSession(deleted)", err, sessionstore.ErrNotFound)
}
