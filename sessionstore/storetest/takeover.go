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
	if le.Holder != st.Node() || le.SessionID != s.ID {
		t.Fatalf("LockedError: got holder %q upload %q, want %q %q", le.Holder, le.SessionID, st.Node(), s.ID)
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
	want := []sessionstore.ReleaseRequest{{SessionID: s.ID}, {SessionID: s.ID, Delete: true}}
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

// testDropLease: a node drops a lease of its own whatever its token (one
// whose acquisition answer it lost); another node's lease stays.
func testDropLease(t *testing.T, st sessionstore.Store, fleet Fleet) {
	ctx := t.Context()
	s, _ := create(t, st)
	lost := mustLease(t, st, s.ID, time.Minute, 0)
	if err := st.DropLease(ctx, s.ID, "another-node"); err != nil {
		t.Fatalf("DropLease for another node: %v", err)
	}
	_, err := st.AcquireLease(ctx, s.ID, time.Minute, 0)
	wantErr(t, "AcquireLease after another node's DropLease", err, sessionstore.ErrLocked)
	if err := st.DropLease(ctx, s.ID, lost.Holder); err != nil {
		t.Fatalf("DropLease: %v", err)
	}
	l := mustLease(t, fleet.Peer(t, st), s.ID, time.Minute, 0)
	if l.Token <= lost.Token {
		t.Fatalf("token after DropLease: got %d, want > %d", l.Token, lost.Token)
	}
	_, err = st.Commit(ctx, lost, sessionstore.Commit{ExpectOffset: 0, NewOffset: 5, Length: -1})
	wantErr(t, "Commit with the dropped lease", err, sessionstore.ErrLeaseLost)
	// No lease at all: no error.
	s2, _ := create(t, st)
	if err := st.DropLease(ctx, s2.ID, st.Node()); err != nil {
		t.Fatalf("DropLease without a lease: %v", err)
	}
}
