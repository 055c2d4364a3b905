package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

func runCreateReserved(t *testing.T, newStore func(t *testing.T) sessionstore.Store) {
	t.Run("CreateReserved", func(t *testing.T) { testCreateReserved(t, newStore(t)) })
	t.Run("CreateReservedRefused", func(t *testing.T) { testCreateReservedRefused(t, newStore(t)) })
	t.Run("CreateReservedExists", func(t *testing.T) { testCreateReservedExists(t, newStore(t)) })
	t.Run("CreateReservedVerifiedEvent", func(t *testing.T) { testCreateReservedVerifiedEvent(t, newStore(t)) })
	t.Run("CommitSettles", func(t *testing.T) { testCommitSettles(t, newStore(t)) })
	t.Run("CommitQueuesEvent", func(t *testing.T) { testCommitQueuesEvent(t, newStore(t)) })
}

// reservedFixture is a fresh fixture of a new account as a Creation of
// its whole length.
func reservedFixture() sessionstore.Creation {
	s, a := fixture()
	s.Account = newID()
	a.Account = s.Account
	return sessionstore.Creation{Session: s, Asset: a, Reserve: s.Length}
}

// testCreateReserved: one call stores the session and its asset, holds
// the quota and queues the event for the account's endpoints.
func testCreateReserved(t *testing.T, st sessionstore.Store) {
	c := reservedFixture()
	h := newHook(t, st, c.Session.Account, sessionstore.EventAssetCreated)
	ev := newEvent(sessionstore.EventAssetCreated)
	ev.Asset = c.Asset
	c.Event = &ev
	c.Session.NextPart = 0
	if err := st.CreateReserved(t.Context(), c); err != nil {
		t.Fatalf("CreateReserved: %v", err)
	}
	want := c.Session
	want.NextPart = 1
	equalSession(t, "session", mustSession(t, st, c.Session.ID), want)
	equalAsset(t, "asset", mustAsset(t, st, c.Asset.ID), c.Asset)
	wantUsage(t, st, c.Session.Account, "after CreateReserved", sessionstore.QuotaUsage{Uploads: 1, BytesReserved: c.Reserve})
	j := mustClaimHook(t, st, "c1", time.Second, time.Minute)
	if j.HookID != h.ID || j.Event.ID != ev.ID || j.Event.Asset.ID != c.Asset.ID {
		t.Fatalf("queued job: got %+v, want event %s for hook %s", j, ev.ID, h.ID)
	}
	// The hold is the upload's like ReserveQuota's: it settles.
	l := mustLease(t, st, c.Session.ID, time.Second, 0)
	mustCommit(t, st, l, sessionstore.Commit{ExpectOffset: 0, NewOffset: c.Session.Length, Length: -1,
		Complete: true, SHA256: "s", Settle: true})
	wantUsage(t, st, c.Session.Account, "after the settling commit", sessionstore.QuotaUsage{BytesStored: c.Session.Length})
}

// testCreateReservedVerifiedEvent: the service's event (to be verified)
// is queued once for each endpoint of the account subscribed to it (not
// for one subscribed to other events, nor one with none), with its fields
// whole and no attempt made. (Whether a refused creation queues one is
// the store's choice: an event to be verified whose change never happened
// is dropped at delivery.)
func testCreateReservedVerifiedEvent(t *testing.T, st sessionstore.Store) {
	c := reservedFixture()
	acct := c.Session.Account
	h := newHook(t, st, acct, sessionstore.EventAssetReady, sessionstore.EventAssetCreated)
	newHook(t, st, acct, sessionstore.EventAssetReady)
	newHook(t, st, acct)
	newHook(t, st, newID(), sessionstore.EventAssetCreated)
	ev := newEvent(sessionstore.EventAssetCreated)
	ev.Asset, ev.Verify = c.Asset, true
	c.Event = &ev

	before := time.Now()
	if err := st.CreateReserved(t.Context(), c); err != nil {
		t.Fatalf("CreateReserved: %v", err)
	}
	j := mustClaimHook(t, st, "c1", time.Second, time.Minute)
	if j.HookID != h.ID || j.Attempts != 0 || j.Since.Before(before.Add(-time.Second)) ||
		j.Event.ID != ev.ID || j.Event.Type != ev.Type || !j.Event.Verify || !j.Event.Time.Equal(ev.Time) {
		t.Fatalf("queued job: got %+v, want event %s for hook %s, 0 attempts, since the creation", j, ev.ID, h.ID)
	}
	equalAsset(t, "the job's asset", j.Event.Asset, c.Asset)
	wantNoHookJob(t, st, "after one subscribed endpoint's job", time.Minute)
}

// testCommitQueuesEvent: a commit's event is queued for each endpoint of
// the account subscribed to it, once the commit is applied.
func testCommitQueuesEvent(t *testing.T, st sessionstore.Store) {
	c := reservedFixture()
	if err := st.CreateReserved(t.Context(), c); err != nil {
		t.Fatalf("CreateReserved: %v", err)
	}
	h := newHook(t, st, c.Session.Account, sessionstore.EventAssetReady)
	newHook(t, st, c.Session.Account, sessionstore.EventAssetCreated)
	ev := newEvent(sessionstore.EventAssetReady)
	ev.Asset = sessionstore.Asset{ID: c.Asset.ID, Account: c.Session.Account, SessionID: c.Session.ID}
	ev.Verify = true
	l := mustLease(t, st, c.Session.ID, time.Second, 0)
	mustCommit(t, st, l, sessionstore.Commit{ExpectOffset: 0, NewOffset: c.Session.Length, Length: -1,
		Complete: true, SHA256: "s", Settle: true, Event: &ev})
	if got := mustAsset(t, st, c.Asset.ID); got.State != "ready" {
		t.Fatalf("asset after the completing commit: state %q, want ready", got.State)
	}
	j := mustClaimHook(t, st, "c1", time.Second, time.Minute)
	if j.HookID != h.ID || j.Event.ID != ev.ID || j.Event.Type != sessionstore.EventAssetReady || !j.Event.Verify {
		t.Fatalf("queued job: got %+v, want event %s for hook %s", j, ev.ID, h.ID)
	}
	wantNoHookJob(t, st, "after the subscribed endpoint's job", time.Minute)
}

// testCreateReservedRefused: a quota refusal stores nothing and holds
// nothing.
func testCreateReservedRefused(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	c := reservedFixture()
	c.Defaults = sessionstore.QuotaLimits{BytesReserved: c.Reserve - 1}
	err := st.CreateReserved(ctx, c)
	wantRefused(t, "CreateReserved past bytes_reserved", err, sessionstore.QuotaBytesReserved)
	if _, err := st.Session(ctx, c.Session.ID); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Fatalf("Session after a refused creation: got %v, want ErrNotFound", err)
	}
	if _, err := st.Asset(ctx, c.Asset.ID); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Fatalf("Asset after a refused creation: got %v, want ErrNotFound", err)
	}
	wantUsage(t, st, c.Session.Account, "after a refused creation", sessionstore.QuotaUsage{})
	if holds, err := st.QuotaHolds(ctx, time.Now().Add(time.Hour), 1000); err != nil || hasHold(holds, c.Session.ID) {
		t.Fatalf("QuotaHolds after a refused creation: got %+v, %v; want none of %s", holds, err, c.Session.ID)
	}
	// The same creation within the limit goes through.
	c.Defaults = sessionstore.QuotaLimits{}
	if err := st.CreateReserved(ctx, c); err != nil {
		t.Fatalf("CreateReserved after the refusal: %v", err)
	}
	if holds, err := st.QuotaHolds(ctx, time.Now().Add(time.Hour), 1000); err != nil || !hasHold(holds, c.Session.ID) {
		t.Fatalf("QuotaHolds after the creation: got %+v, %v; want %s's", holds, err, c.Session.ID)
	}
}

// testCreateReservedExists: a taken id is ErrExists and the quota does not
// count the refused upload.
func testCreateReservedExists(t *testing.T, st sessionstore.Store) {
	c := reservedFixture()
	if err := st.CreateReserved(t.Context(), c); err != nil {
		t.Fatalf("CreateReserved: %v", err)
	}
	again := c
	again.Session.ID = newID() // a new session for the taken asset id
	if err := st.CreateReserved(t.Context(), again); !errors.Is(err, sessionstore.ErrExists) {
		t.Fatalf("CreateReserved of a taken asset id: got %v, want ErrExists", err)
	}
	if err := st.CreateReserved(t.Context(), c); !errors.Is(err, sessionstore.ErrExists) {
		t.Fatalf("CreateReserved again: got %v, want ErrExists", err)
	}
	wantUsage(t, st, c.Session.Account, "after refused duplicates", sessionstore.QuotaUsage{Uploads: 1, BytesReserved: c.Reserve})
	if _, err := st.Session(t.Context(), again.Session.ID); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Fatalf("Session of the refused duplicate: got %v, want ErrNotFound", err)
	}
}

// testCommitSettles: a completing commit with Settle turns the hold into
// stored bytes at the final offset; one that is refused settles nothing,
// nor does a Settle commit that does not complete.
func testCommitSettles(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	s, a := fixture()
	s.Account = newID()
	a.Account = s.Account
	s.Length, a.SizeBytes = -1, -1
	if err := st.CreateUpload(ctx, s, a); err != nil {
		t.Fatal(err)
	}
	mustReserve(t, st, s.Account, s.ID, 900, unlimited)
	l := mustLease(t, st, s.ID, time.Second, 0)
	mustCommit(t, st, l, sessionstore.Commit{ExpectOffset: 0, NewOffset: 300, Length: -1, Settle: true})
	wantUsage(t, st, s.Account, "after a Settle commit that does not complete", sessionstore.QuotaUsage{Uploads: 1, BytesReserved: 900})
	if _, err := st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: 0, NewOffset: 650, Length: -1, Complete: true, Settle: true}); !errors.Is(err, sessionstore.ErrOffsetConflict) {
		t.Fatalf("completing commit at a stale offset: got %v, want ErrOffsetConflict", err)
	}
	wantUsage(t, st, s.Account, "after a refused completion", sessionstore.QuotaUsage{Uploads: 1, BytesReserved: 900})
	got := mustCommit(t, st, l, sessionstore.Commit{ExpectOffset: 300, NewOffset: 650, Length: -1, Complete: true, SHA256: "s", Settle: true})
	if !got.Completed || got.Offset != 650 {
		t.Fatalf("session after the completion: got %+v, want completed at 650", got)
	}
	wantUsage(t, st, s.Account, "after the settling completion", sessionstore.QuotaUsage{BytesStored: 650})
	if holds, err := st.QuotaHolds(ctx, time.Now().Add(time.Hour), 1000); err != nil || hasHold(holds, s.ID) {
		t.Fatalf("QuotaHolds after the settling completion: got %+v, %v; want none of %s", holds, err, s.ID)
	}
}

func hasHold(holds []sessionstore.QuotaHold, id string) bool {
	for _, h := range holds {
		if h.UploadID == id {
			return true
		}
	}
	return false
}
