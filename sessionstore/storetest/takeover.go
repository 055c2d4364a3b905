package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// testLeaseHolder: a lease records its node, and a refusal names the
// holder, also to another node.
func testLeaseHolder(t *testing.T, st sessionstore.Store, fleet Fleet) {
	s, _ := create(t, st)
	l := mustLease(t, st, s.ID, time.Minute, 0)
	if l.Holder == "" || l.Holder != st.Node() {
		t.Fatalf("Lease.Holder: got %q, want the node %q", l.Holder, st.Node())
	}
	peer := fleet.Peer(t, st)
	_, err := peer.AcquireLease(t.Context(), s.ID, time.Minute, 0)
	le, ok := errors.AsType[*sessionstore.LockedError](err)
	if !ok || !errors.Is(err, sessionstore.ErrLocked) {
		t.Fatalf("AcquireLease on a held upload from a peer: got %v, want a *LockedError", err)
	}
	if le.Holder != st.Node() || le.SessionID != s.ID || le.Token != l.Token {
		t.Fatalf("LockedError: got holder %q upload %q token %d, want %q %q %d", le.Holder, le.SessionID, le.Token, st.Node(), s.ID, l.Token)
	}
}

// testReleaseRequest: a request sent from any node to the holder reaches
// the holder's watcher, and only while it watches.
func testReleaseRequest(t *testing.T, st sessionstore.Store, fleet Fleet) {
	ctx := t.Context()
	var mu sync.Mutex
	var got []sessionstore.ReleaseRequest
	arrived := make(chan struct{}, 8)
	stop, err := st.WatchReleases(ctx, func(r sessionstore.ReleaseRequest) {
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
		arrived <- struct{}{}
	})
	if err != nil {
		t.Fatalf("WatchReleases: %v", err)
	}
	peer := fleet.Peer(t, st)
	s, _ := create(t, st)
	l := mustLease(t, st, s.ID, time.Minute, 0)
	// A request for another node does not reach this one.
	if err := peer.RequestRelease(ctx, "no-such-node", sessionstore.ReleaseRequest{SessionID: "other"}); err != nil {
		t.Fatalf("RequestRelease to an unknown node: %v", err)
	}
	want := []sessionstore.ReleaseRequest{{SessionID: s.ID, Token: l.Token}, {SessionID: s.ID, Delete: true}}
	for _, r := range want {
		if err := peer.RequestRelease(ctx, l.Holder, r); err != nil {
			t.Fatalf("RequestRelease(%+v): %v", r, err)
		}
		select {
		case <-arrived:
		case <-time.After(2 * time.Second):
			t.Fatalf("release request %+v: not delivered within 2s", r)
		}
	}
	mu.Lock()
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("delivered: got %+v, want %+v", got, want)
	}
	mu.Unlock()
	stop()
	if err := peer.RequestRelease(ctx, l.Holder, sessionstore.ReleaseRequest{SessionID: s.ID}); err != nil {
		t.Fatalf("RequestRelease after stop: %v", err)
	}
	select {
	case <-arrived:
		t.Fatalf("a release request was delivered after stop")
	case <-time.After(100 * time.Millisecond):
	}
}

// testDeadHolder: a lease held by a node that died is taken over at once
// by the next acquisition, with a new token; the dead node's lease then
// commits nothing (the fencing token keeps a node that was only paused
// harmless).
func testDeadHolder(t *testing.T, st sessionstore.Store, fleet Fleet) {
	ctx := t.Context()
	s, _ := create(t, st)
	old := mustLease(t, st, s.ID, time.Minute, 2)
	next := fleet.Crash(t, st)
	start := time.Now()
	l, err := next.AcquireLease(ctx, s.ID, time.Minute, 2)
	if err != nil {
		t.Fatalf("AcquireLease after the holder died: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("AcquireLease after the holder died took %v", took)
	}
	if l.Token <= old.Token || l.Holder != next.Node() {
		t.Fatalf("lease after takeover: got token %d holder %q, want > %d and %q", l.Token, l.Holder, old.Token, next.Node())
	}
	if l.FirstPart != old.FirstPart+old.Parts {
		t.Fatalf("parts after takeover: got first %d, want %d (no reuse of the dead lease's parts)", l.FirstPart, old.FirstPart+old.Parts)
	}
	_, err = next.Commit(ctx, old, sessionstore.Commit{ExpectOffset: 0, NewOffset: 5, Length: -1})
	wantErr(t, "Commit with the dead node's lease", err, sessionstore.ErrLeaseLost)
	mustCommit(t, next, l, sessionstore.Commit{ExpectOffset: 0, NewOffset: 5, Length: -1})
	// The new holder is live: the next acquisition is refused.
	_, err = next.AcquireLease(ctx, s.ID, time.Minute, 0)
	wantErr(t, "AcquireLease while the new holder lives", err, sessionstore.ErrLocked)
}

// testDropLease: a node drops a lease of its own (one whose acquisition
// answer it lost) only by the token a release request named: another
// node's lease, and a newer lease of its own, stay.
func testDropLease(t *testing.T, st sessionstore.Store, fleet Fleet) {
	ctx := t.Context()
	s, _ := create(t, st)
	lost := mustLease(t, st, s.ID, time.Minute, 0)
	if err := st.DropLease(ctx, s.ID, "another-node", lost.Token); err != nil {
		t.Fatalf("DropLease for another node: %v", err)
	}
	_, err := st.AcquireLease(ctx, s.ID, time.Minute, 0)
	wantErr(t, "AcquireLease after another node's DropLease", err, sessionstore.ErrLocked)
	if err := st.DropLease(ctx, s.ID, lost.Holder, lost.Token+1); err != nil {
		t.Fatalf("DropLease of another token: %v", err)
	}
	_, err = st.AcquireLease(ctx, s.ID, time.Minute, 0)
	wantErr(t, "AcquireLease after a DropLease of another token", err, sessionstore.ErrLocked)
	if err := st.DropLease(ctx, s.ID, lost.Holder, lost.Token); err != nil {
		t.Fatalf("DropLease: %v", err)
	}
	l := mustLease(t, fleet.Peer(t, st), s.ID, time.Minute, 0)
	if l.Token <= lost.Token {
		t.Fatalf("token after DropLease: got %d, want > %d", l.Token, lost.Token)
	}
	_, err = st.Commit(ctx, lost, sessionstore.Commit{ExpectOffset: 0, NewOffset: 5, Length: -1})
	wantErr(t, "Commit with the dropped lease", err, sessionstore.ErrLeaseLost)
	// The dropped token again: the newer lease stays.
	if err := st.DropLease(ctx, s.ID, l.Holder, lost.Token); err != nil {
		t.Fatalf("DropLease of the dropped token: %v", err)
	}
	mustCommit(t, st, l, sessionstore.Commit{ExpectOffset: 0, NewOffset: 5, Length: -1})
	// No lease at all: no error.
	s2, _ := create(t, st)
	if err := st.DropLease(ctx, s2.ID, st.Node(), 1); err != nil {
		t.Fatalf("DropLease without a lease: %v", err)
	}
}

// testDeleteLeased: a delete under a lease happens only while that lease
// is current: after a newer lease was taken (and committed to) the upload
// stays, and so does what was committed.
func testDeleteLeased(t *testing.T, st sessionstore.Store, fleet Fleet) {
	ctx := t.Context()
	s, _ := create(t, st)
	old := mustLease(t, st, s.ID, time.Minute, 0)
	if err := st.ReleaseLease(ctx, old); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	peer := fleet.Peer(t, st)
	newer := mustLease(t, peer, s.ID, time.Minute, 0)
	mustCommit(t, peer, newer, sessionstore.Commit{ExpectOffset: 0, NewOffset: 5, Length: -1})
	_, err := st.DeleteUploadLeased(ctx, old)
	wantErr(t, "DeleteUploadLeased with a lease taken over", err, sessionstore.ErrLeaseLost)
	if got := mustSession(t, st, s.ID); got.Offset != 5 {
		t.Fatalf("session after a refused delete: offset %d, want 5", got.Offset)
	}
	if _, err := st.Asset(ctx, s.AssetID); err != nil {
		t.Fatalf("asset after a refused delete: %v", err)
	}
	// An expired lease deletes nothing either.
	if err := peer.ReleaseLease(ctx, newer); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	short := mustLease(t, peer, s.ID, 30*time.Millisecond, 0)
	time.Sleep(60 * time.Millisecond)
	_, err = peer.DeleteUploadLeased(ctx, short)
	wantErr(t, "DeleteUploadLeased with an expired lease", err, sessionstore.ErrLeaseLost)
	// The current lease deletes, and answers the session as it was.
	cur := mustLease(t, st, s.ID, time.Minute, 0)
	got, err := st.DeleteUploadLeased(ctx, cur)
	if err != nil {
		t.Fatalf("DeleteUploadLeased with the current lease: %v", err)
	}
	if got.ID != s.ID || got.Offset != 5 {
		t.Fatalf("deleted session: got %s at %d, want %s at 5", got.ID, got.Offset, s.ID)
	}
	_, err = st.Session(ctx, s.ID)
	wantErr(t, "Session after DeleteUploadLeased", err, sessionstore.ErrNotFound)
	_, err = st.Asset(ctx, s.AssetID)
	wantErr(t, "Asset after DeleteUploadLeased", err, sessionstore.ErrNotFound)
	_, err = st.DeleteUploadLeased(ctx, cur)
	wantErr(t, "DeleteUploadLeased of a deleted upload", err, sessionstore.ErrNotFound)
}
