// Package storetest is the behaviour suite every sessionstore.Store must
// pass. An implementation's test calls Run with a constructor:
//
//	func TestLocal(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) sessionstore.Store {
//			s, err := bolt.New(filepath.Join(t.TempDir(), "roughy.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// newStore is called once per subtest and must return an empty store (or
// one whose existing data cannot collide with random ids) and close it
// with t.Cleanup. Durations are tens of milliseconds, so the suite runs in
// a few seconds.
//
// Contract details the suite pins down, beyond the doc comments of
// sessionstore.Store:
//   - CreateUpload with a.ID == "" stores the session only (a concatenation
//     partial has no visible asset); completing it enqueues no probe job.
//   - A session created with NextPart < 1 starts reserving at part 1.
//   - An expired lease is lost even if nobody took over: RenewLease and
//     Commit answer ErrLeaseLost.
//   - Commit checks the lease before the offset.
//   - SetLength and a Commit that sets a deferred Length also set the
//     asset's SizeBytes; a Complete commit sets a deferred Length to
//     NewOffset.
//   - A probe job's first claim has Attempts 0.
//   - A Commit with ExpiresAt moves the session's expiry, in Expired too;
//     one without keeps it.
//   - A Complete commit drops the committed parts (Parts answers none).
package storetest

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// Fleet tells the suite how to get more nodes on one store's backend, for
// the takeover cases.
type Fleet struct {
	// Peer returns another live node on st's backend (st itself for a
	// store that is one node, like the embedded one). The suite does not close it.
	Peer func(t *testing.T, st sessionstore.Store) sessionstore.Store
	// Crash makes st's node dead as a kill -9 would, with its liveness
	// record already run out, and returns a new live node on the same
	// data. st must not be used afterwards.
	Crash func(t *testing.T, st sessionstore.Store) sessionstore.Store
}

// Run runs the suite against the stores newStore makes.
func Run(t *testing.T, newStore func(t *testing.T) sessionstore.Store, fleet Fleet) {
	t.Run("Ping", func(t *testing.T) {
		if err := newStore(t).Ping(t.Context()); err != nil {
			t.Fatalf("Ping: got %v, want nil", err)
		}
	})
	t.Run("CreateRoundTrip", func(t *testing.T) { testCreateRoundTrip(t, newStore(t)) })
	t.Run("CreateExists", func(t *testing.T) { testCreateExists(t, newStore(t)) })
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, newStore(t)) })
	t.Run("NextPartDefault", func(t *testing.T) { testNextPartDefault(t, newStore(t)) })
	t.Run("LeaseLocked", func(t *testing.T) { testLeaseLocked(t, newStore(t)) })
	t.Run("LeaseTakeover", func(t *testing.T) { testLeaseTakeover(t, newStore(t)) })
	t.Run("LeaseHolder", func(t *testing.T) { testLeaseHolder(t, newStore(t), fleet) })
	t.Run("ReleaseRequest", func(t *testing.T) { testReleaseRequest(t, newStore(t), fleet) })
	t.Run("DeadHolder", func(t *testing.T) { testDeadHolder(t, newStore(t), fleet) })
	t.Run("DropLease", func(t *testing.T) { testDropLease(t, newStore(t), fleet) })
	t.Run("DeleteLeased", func(t *testing.T) { testDeleteLeased(t, newStore(t), fleet) })
	t.Run("LeaseRenew", func(t *testing.T) { testLeaseRenew(t, newStore(t)) })
	t.Run("LeaseRelease", func(t *testing.T) { testLeaseRelease(t, newStore(t)) })
	t.Run("SessionLeased", func(t *testing.T) { testSessionLeased(t, newStore(t)) })
	t.Run("PartReservation", func(t *testing.T) { testPartReservation(t, newStore(t)) })
	t.Run("PartsExhausted", func(t *testing.T) { testPartsExhausted(t, newStore(t)) })
	t.Run("CommitOffsetConflict", func(t *testing.T) { testCommitOffsetConflict(t, newStore(t)) })
	t.Run("CommitRewind", func(t *testing.T) { testCommitRewind(t, newStore(t)) })
	t.Run("CommitLeaseLost", func(t *testing.T) { testCommitLeaseLost(t, newStore(t)) })
	t.Run("CommitAppliesFields", func(t *testing.T) { testCommitAppliesFields(t, newStore(t)) })
	t.Run("CommitExtendsLease", func(t *testing.T) { testCommitExtendsLease(t, newStore(t)) })
	t.Run("CommitDeferredLength", func(t *testing.T) { testCommitDeferredLength(t, newStore(t)) })
	t.Run("CommitComplete", func(t *testing.T) { testCommitComplete(t, newStore(t)) })
	t.Run("CompletePartialNoAsset", func(t *testing.T) { testCompletePartialNoAsset(t, newStore(t)) })
	t.Run("SetLength", func(t *testing.T) { testSetLength(t, newStore(t)) })
	t.Run("DeleteUpload", func(t *testing.T) { testDeleteUpload(t, newStore(t)) })
	t.Run("Expired", func(t *testing.T) { testExpired(t, newStore(t)) })
	t.Run("CommitSlidesExpiry", func(t *testing.T) { testCommitSlidesExpiry(t, newStore(t)) })
	t.Run("Keys", func(t *testing.T) { testKeys(t, newStore(t)) })
	t.Run("KeyRevocationsReachWatchers", func(t *testing.T) { testKeyRevocations(t, newStore(t), fleet) })
	t.Run("ProbeEmpty", func(t *testing.T) { testProbeEmpty(t, newStore(t)) })
	t.Run("ProbeClaimAck", func(t *testing.T) { testProbeClaimAck(t, newStore(t)) })
	t.Run("ProbeWakesBlockedClaim", func(t *testing.T) { testProbeWakesBlockedClaim(t, newStore(t)) })
	t.Run("ProbeRetryDelay", func(t *testing.T) { testProbeRetryDelay(t, newStore(t)) })
	t.Run("ProbeReclaim", func(t *testing.T) { testProbeReclaim(t, newStore(t)) })
	t.Run("ProbeDead", func(t *testing.T) { testProbeDead(t, newStore(t)) })
	t.Run("ProbeQueueStats", func(t *testing.T) { testProbeQueueStats(t, newStore(t)) })
	t.Run("QueueLengths", func(t *testing.T) { testQueueLengths(t, newStore(t)) })
	t.Run("ConcurrentCommit", func(t *testing.T) { testConcurrentCommit(t, newStore(t)) })
	t.Run("ConcurrentAcquire", func(t *testing.T) { testConcurrentAcquire(t, newStore(t)) })
	runQuota(t, newStore)
	runWebhooks(t, newStore)
	t.Run("DirectUploads", func(t *testing.T) { testDirectUploads(t, newStore(t)) })
	t.Run("DirectClaimOnce", func(t *testing.T) { testDirectClaimOnce(t, newStore(t)) })
}

// newID returns a random id, so stores that keep data between subtests
// cannot collide.
func newID() string { return "st-" + rand.Text() }

// now returns the current time at second precision, which every store
// must keep.
func now() time.Time { return time.Now().UTC().Truncate(time.Second) }

// fixture returns a session and its asset, every field set.
func fixture() (sessionstore.Session, sessionstore.Asset) {
	id := newID()
	created := now()
	s := sessionstore.Session{
		ID:        id,
		Account:   "acme",
		AssetID:   id,
		Length:    1000,
		Metadata:  "type dmlkZW8=,filename ZXAubXA0",
		HashState: []byte("hash-state-0"),
		Storage:   []byte(`{"upload":"x"}`),
		NextPart:  1,
		CreatedAt: created,
		ExpiresAt: created.Add(24 * time.Hour),
	}
	a := sessionstore.Asset{
		ID:          id,
		Account:     "acme",
		SessionID:   id,
		Type:        "video",
		State:       sessionstore.StateUploading,
		SizeBytes:   1000,
		ContentType: "video/mp4",
		Filename:    "ep.mp4",
		Metadata:    map[string]string{"type": "video", "filename": "ep.mp4", "x-custom": "ü"},
		StorageKey:  "uploads/" + id,
		CreatedAt:   created,
	}
	return s, a
}

// create stores a fresh fixture and returns it.
func create(t *testing.T, st sessionstore.Store) (sessionstore.Session, sessionstore.Asset) {
	t.Helper()
	s, a := fixture()
	if err := st.CreateUpload(t.Context(), s, a); err != nil {
		t.Fatalf("CreateUpload: %v", err)
	}
	return s, a
}

func mustSession(t *testing.T, st sessionstore.Store, id string) sessionstore.Session {
	t.Helper()
	s, err := st.Session(t.Context(), id)
	if err != nil {
		t.Fatalf("Session(%s): %v", id, err)
	}
	return s
}

func mustAsset(t *testing.T, st sessionstore.Store, id string) sessionstore.Asset {
	t.Helper()
	a, err := st.Asset(t.Context(), id)
	if err != nil {
		t.Fatalf("Asset(%s): %v", id, err)
	}
	return a
}

func mustLease(t *testing.T, st sessionstore.Store, id string, ttl time.Duration, parts int32) sessionstore.Lease {
	t.Helper()
	l, err := st.AcquireLease(t.Context(), id, ttl, parts)
	if err != nil {
		t.Fatalf("AcquireLease(%s, %v, %d): %v", id, ttl, parts, err)
	}
	return l
}

func mustCommit(t *testing.T, st sessionstore.Store, l sessionstore.Lease, c sessionstore.Commit) sessionstore.Session {
	t.Helper()
	s, err := st.Commit(t.Context(), l, c)
	if err != nil {
		t.Fatalf("Commit(%+v): %v", c, err)
	}
	return s
}

func wantErr(t *testing.T, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("%s: got error %v, want %v", what, got, want)
	}
}

// equalSession compares every field; times at second precision.
func equalSession(t *testing.T, what string, got, want sessionstore.Session) {
	t.Helper()
	ok := got.ID == want.ID && got.Account == want.Account && got.AssetID == want.AssetID &&
		got.Length == want.Length && got.Offset == want.Offset && got.Metadata == want.Metadata &&
		got.Partial == want.Partial && slices.Equal(got.ConcatOf, want.ConcatOf) && got.ConcatHeader == want.ConcatHeader &&
		bytes.Equal(got.HashState, want.HashState) && bytes.Equal(got.Storage, want.Storage) &&
		got.NextPart == want.NextPart && got.Completed == want.Completed &&
		sameSecond(got.CreatedAt, want.CreatedAt) && sameSecond(got.ExpiresAt, want.ExpiresAt)
	if !ok {
		t.Fatalf("%s:\n got session %+v\nwant session %+v", what, got, want)
	}
}

// equalAsset compares every field; times at second precision.
func equalAsset(t *testing.T, what string, got, want sessionstore.Asset) {
	t.Helper()
	ok := got.ID == want.ID && got.Account == want.Account && got.SessionID == want.SessionID &&
		got.Type == want.Type && got.State == want.State && got.SizeBytes == want.SizeBytes &&
		got.ContentType == want.ContentType && got.Filename == want.Filename &&
		maps.Equal(got.Metadata, want.Metadata) && got.DurationSeconds == want.DurationSeconds &&
		got.SHA256 == want.SHA256 && got.StorageKey == want.StorageKey &&
		sameSecond(got.CreatedAt, want.CreatedAt) && got.Deleted == want.Deleted
	if !ok {
		t.Fatalf("%s:\n got asset %+v\nwant asset %+v", what, got, want)
	}
}

func sameSecond(a, b time.Time) bool {
	return a.Truncate(time.Second).Equal(b.Truncate(time.Second))
}

func testCreateRoundTrip(t *testing.T, st sessionstore.Store) {
	s, a := create(t, st)
	equalSession(t, "Session after CreateUpload", mustSession(t, st, s.ID), s)
	equalAsset(t, "Asset after CreateUpload", mustAsset(t, st, a.ID), a)
	parts, err := st.Parts(t.Context(), s.ID)
	if err != nil || len(parts) != 0 {
		t.Fatalf("Parts of new upload: got %v, %v; want none, nil", parts, err)
	}

	// A deferred-length final concatenation with every optional field.
	s2, a2 := fixture()
	s2.Length, a2.SizeBytes = -1, -1
	s2.ConcatOf = []string{"p1", "p2", "p3"}
	s2.ConcatHeader = "final;/api/v1/assets/upload-resumable/p1 https://h/api/v1/assets/upload-resumable/p2  p3"
	s2.Metadata = ""
	s2.HashState, s2.Storage = nil, nil
	a2.Metadata = nil
	a2.Type = "audio"
	if err := st.CreateUpload(t.Context(), s2, a2); err != nil {
		t.Fatalf("CreateUpload(deferred concat): %v", err)
	}
	equalSession(t, "deferred concat session", mustSession(t, st, s2.ID), s2)
	equalAsset(t, "deferred concat asset", mustAsset(t, st, a2.ID), a2)

	// A partial: session only, no asset.
	s3, _ := fixture()
	s3.Partial = true
	s3.AssetID = ""
	if err := st.CreateUpload(t.Context(), s3, sessionstore.Asset{}); err != nil {
		t.Fatalf("CreateUpload(partial, no asset): %v", err)
	}
	equalSession(t, "partial session", mustSession(t, st, s3.ID), s3)
	_, err = st.Asset(t.Context(), s3.ID)
	wantErr(t, "Asset of a partial", err, sessionstore.ErrNotFound)
}

func testCreateExists(t *testing.T, st sessionstore.Store) {
	s, a := create(t, st)
	s2, a2 := fixture()
	s2.ID = s.ID
	wantErr(t, "CreateUpload with a taken session id", st.CreateUpload(t.Context(), s2, a2), sessionstore.ErrExists)
	s3, a3 := fixture()
	a3.ID = a.ID
	wantErr(t, "CreateUpload with a taken asset id", st.CreateUpload(t.Context(), s3, a3), sessionstore.ErrExists)
	// The failed creations changed nothing.
	equalSession(t, "session after failed duplicate", mustSession(t, st, s.ID), s)
	equalAsset(t, "asset after failed duplicate", mustAsset(t, st, a.ID), a)
	_, err := st.Session(t.Context(), s3.ID)
	wantErr(t, "Session of a failed creation", err, sessionstore.ErrNotFound)
}

func testNotFound(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	id := newID()
	_, err := st.Session(ctx, id)
	wantErr(t, "Session(unknown)", err, sessionstore.ErrNotFound)
	_, err = st.Asset(ctx, id)
	wantErr(t, "Asset(unknown)", err, sessionstore.ErrNotFound)
	_, err = st.Parts(ctx, id)
	wantErr(t, "Parts(unknown)", err, sessionstore.ErrNotFound)
	wantErr(t, "SetLength(unknown)", st.SetLength(ctx, id, 10), sessionstore.ErrNotFound)
	_, err = st.AcquireLease(ctx, id, time.Second, 1)
	wantErr(t, "AcquireLease(unknown)", err, sessionstore.ErrNotFound)
	_, err = st.DeleteUpload(ctx, id)
	wantErr(t, "DeleteUpload(unknown)", err, sessionstore.ErrNotFound)
	_, err = st.KeyByHash(ctx, id)
	wantErr(t, "KeyByHash(unknown)", err, sessionstore.ErrNotFound)
	wantErr(t, "RevokeKey(unknown)", st.RevokeKey(ctx, id), sessionstore.ErrNotFound)
}

func testNextPartDefault(t *testing.T, st sessionstore.Store) {
	s, a := fixture()
	s.NextPart = 0
	if err := st.CreateUpload(t.Context(), s, a); err != nil {
		t.Fatalf("CreateUpload: %v", err)
	}
	if got := mustSession(t, st, s.ID).NextPart; got != 1 {
		t.Fatalf("NextPart of a session created with 0: got %d, want 1", got)
	}
	if l := mustLease(t, st, s.ID, time.Second, 2); l.FirstPart != 1 || l.Parts != 2 {
		t.Fatalf("first reservation: got parts %d+%d, want 1+2", l.FirstPart, l.Parts)
	}
}

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

func testCommitOffsetConflict(t *testing.T, st sessionstore.Store) {
	s, _ := create(t, st)
	l := mustLease(t, st, s.ID, time.Second, 2)
	got := mustCommit(t, st, l, sessionstore.Commit{
		ExpectOffset: 0, NewOffset: 100, HashState: []byte("h100"), Length: -1,
		Parts: []sessionstore.Part{{Number: 1, ETag: "e1", Size: 100, Offset: 0}},
	})
	before := mustSession(t, st, s.ID)
	equalSession(t, "Commit's returned session", got, before)
	for _, expect := range []int64{0, 50, 200} {
		// A plain commit, then one that would also complete the upload.
		_, err := st.Commit(t.Context(), l, sessionstore.Commit{
			ExpectOffset: expect, NewOffset: expect + 100, HashState: []byte("bad"),
			Storage: []byte("bad"), Length: -1,
			Parts: []sessionstore.Part{{Number: 2, ETag: "bad", Size: 100, Offset: expect}},
		})
		wantErr(t, "Commit with a wrong ExpectOffset", err, sessionstore.ErrOffsetConflict)
		_, err = st.Commit(t.Context(), l, sessionstore.Commit{
			ExpectOffset: expect, NewOffset: s.Length, HashState: []byte("bad"),
			Storage: []byte("bad"), Length: -1, Complete: true, SHA256: "bad",
		})
		wantErr(t, "completing Commit with a wrong ExpectOffset", err, sessionstore.ErrOffsetConflict)
	}
	equalSession(t, "session after conflicts", mustSession(t, st, s.ID), before)
	parts, err := st.Parts(t.Context(), s.ID)
	if err != nil || len(parts) != 1 {
		t.Fatalf("Parts after conflicts: got %v, %v; want 1 part", parts, err)
	}
	if a := mustAsset(t, st, s.AssetID); a.State != sessionstore.StateUploading {
		t.Fatalf("asset state after conflicts: got %q, want %q", a.State, sessionstore.StateUploading)
	}
}

// testCommitRewind: an offset moves back only with Rewind (storage lost
// acknowledged bytes), never with Complete and never below 0; the rewound
// session carries the new hash and storage state, and its parts stay.
func testCommitRewind(t *testing.T, st sessionstore.Store) {
	s, _ := create(t, st)
	l := mustLease(t, st, s.ID, time.Second, 2)
	mustCommit(t, st, l, sessionstore.Commit{
		ExpectOffset: 0, NewOffset: 100, HashState: []byte("h100"), Length: -1,
		Parts: []sessionstore.Part{{Number: 1, ETag: "e1", Size: 100, Offset: 0}},
	})
	mustCommit(t, st, l, sessionstore.Commit{ExpectOffset: 100, NewOffset: 130, HashState: []byte("h130"), Storage: []byte("tail"), Length: -1})
	for what, c := range map[string]sessionstore.Commit{
		"a commit back without Rewind":   {ExpectOffset: 130, NewOffset: 100, HashState: []byte("bad"), Length: -1},
		"a completing rewind":            {ExpectOffset: 130, NewOffset: 100, HashState: []byte("bad"), Length: -1, Rewind: true, Complete: true, SHA256: "bad"},
		"a rewind below 0":               {ExpectOffset: 130, NewOffset: -1, HashState: []byte("bad"), Length: -1, Rewind: true},
		"a rewind from the wrong offset": {ExpectOffset: 120, NewOffset: 100, HashState: []byte("bad"), Length: -1, Rewind: true},
	} {
		_, err := st.Commit(t.Context(), l, c)
		wantErr(t, what, err, sessionstore.ErrOffsetConflict)
	}
	got := mustCommit(t, st, l, sessionstore.Commit{ExpectOffset: 130, NewOffset: 100, HashState: []byte("h100"),
		Storage: []byte("no tail"), Length: -1, Rewind: true})
	if got.Offset != 100 || string(got.HashState) != "h100" || string(got.Storage) != "no tail" {
		t.Fatalf("after the rewind: offset %d hash %q storage %q, want 100 h100 \"no tail\"", got.Offset, got.HashState, got.Storage)
	}
	equalSession(t, "session after the rewind", mustSession(t, st, s.ID), got)
	if parts, err := st.Parts(t.Context(), s.ID); err != nil || len(parts) != 1 {
		t.Fatalf("parts after the rewind: %v %v, want the one committed", parts, err)
	}
}

func testCommitLeaseLost(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	s, _ := create(t, st)
	old := mustLease(t, st, s.ID, 30*time.Millisecond, 1)
	time.Sleep(60 * time.Millisecond)
	// Expired, nobody took over yet: still lost.
	_, err := st.Commit(ctx, old, sessionstore.Commit{NewOffset: 10, Length: -1})
	wantErr(t, "Commit with an expired lease", err, sessionstore.ErrLeaseLost)
	cur := mustLease(t, st, s.ID, time.Second, 1)
	_, err = st.Commit(ctx, old, sessionstore.Commit{NewOffset: 10, Length: -1,
		Parts: []sessionstore.Part{{Number: old.FirstPart, ETag: "stale", Size: 10}}})
	wantErr(t, "Commit with a taken-over lease", err, sessionstore.ErrLeaseLost)
	if got := mustSession(t, st, s.ID); got.Offset != 0 {
		t.Fatalf("offset after a lost commit: got %d, want 0", got.Offset)
	}
	if parts, _ := st.Parts(ctx, s.ID); len(parts) != 0 {
		t.Fatalf("parts after a lost commit: got %v, want none", parts)
	}
	// Forged token on the right session.
	forged := cur
	forged.Token++
	_, err = st.Commit(ctx, forged, sessionstore.Commit{NewOffset: 10, Length: -1})
	wantErr(t, "Commit with a forged token", err, sessionstore.ErrLeaseLost)
	mustCommit(t, st, cur, sessionstore.Commit{NewOffset: 10, Length: -1})
}

func testCommitAppliesFields(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	s, _ := create(t, st)
	l := mustLease(t, st, s.ID, time.Second, 3)
	p := func(n int32, off, size int64) sessionstore.Part {
		part := sessionstore.Part{Number: n, ETag: `"etag-` + string(rune('a'+n)) + `"`, Size: size, Offset: off}
		if n != 1 {
			// Parts keep their checksum; part 1 has none (stores from
			// before checksums were kept).
			part.Checksum = "Y3JjMz" + string(rune('a'+n)) + "=="
		}
		return part
	}
	// Parts() lists parts in commit order, not by number.
	c1 := sessionstore.Commit{ExpectOffset: 0, NewOffset: 100, HashState: []byte("h100"),
		Storage: []byte("storage-1"), Length: -1, Parts: []sessionstore.Part{p(2, 0, 60), p(1, 60, 40)}}
	got := mustCommit(t, st, l, c1)
	if got.Offset != 100 || !bytes.Equal(got.HashState, []byte("h100")) || string(got.Storage) != "storage-1" || got.Length != 1000 {
		t.Fatalf("after commit 1: got %+v", got)
	}
	// Storage nil keeps the old value; HashState is replaced.
	c2 := sessionstore.Commit{ExpectOffset: 100, NewOffset: 250, HashState: []byte("h250"), Length: -1,
		Parts: []sessionstore.Part{p(3, 100, 150)}}
	got = mustCommit(t, st, l, c2)
	want := s
	want.Offset, want.HashState, want.Storage, want.NextPart = 250, []byte("h250"), []byte("storage-1"), 4
	equalSession(t, "after commit 2 (returned)", got, want)
	equalSession(t, "after commit 2 (stored)", mustSession(t, st, s.ID), want)
	// A commit without parts (a tail) appends nothing.
	mustCommit(t, st, l, sessionstore.Commit{ExpectOffset: 250, NewOffset: 260, HashState: []byte("h260"),
		Storage: []byte("storage-2"), Length: -1})
	parts, err := st.Parts(ctx, s.ID)
	if err != nil {
		t.Fatalf("Parts: %v", err)
	}
	wantParts := []sessionstore.Part{p(2, 0, 60), p(1, 60, 40), p(3, 100, 150)}
	if !slices.Equal(parts, wantParts) {
		t.Fatalf("Parts: got %+v, want %+v", parts, wantParts)
	}
	if got := mustSession(t, st, s.ID); string(got.Storage) != "storage-2" || got.Offset != 260 {
		t.Fatalf("after tail commit: got offset %d storage %q, want 260 storage-2", got.Offset, got.Storage)
	}
	// The next lease sees every commit (no second read needed).
	if err := st.ReleaseLease(ctx, l); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	l2 := mustLease(t, st, s.ID, time.Second, 0)
	equalSession(t, "session with the next lease", l2.Session, mustSession(t, st, s.ID))
	if l2.Session.Offset != 260 || !bytes.Equal(l2.Session.HashState, []byte("h260")) {
		t.Fatalf("next lease's session: offset %d hash %q, want 260 h260", l2.Session.Offset, l2.Session.HashState)
	}
	if a := mustAsset(t, st, s.AssetID); a.State != sessionstore.StateUploading || a.SHA256 != "" {
		t.Fatalf("asset before completion: got %+v", a)
	}
}

// testCommitExtendsLease: a commit with ExtendLease keeps the lease alive
// past its own TTL (another acquirer is still locked out and the holder
// commits again); one without lets it run out.
func testCommitExtendsLease(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	s, _ := create(t, st)
	l := mustLease(t, st, s.ID, 200*time.Millisecond, 0)
	mustCommit(t, st, l, sessionstore.Commit{ExpectOffset: 0, NewOffset: 10, HashState: []byte("h10"), Length: -1,
		ExtendLease: 2 * time.Second})
	time.Sleep(400 * time.Millisecond) // past the lease's own TTL
	if _, err := st.AcquireLease(ctx, s.ID, time.Second, 0); !errors.Is(err, sessionstore.ErrLocked) {
		t.Fatalf("AcquireLease after an extending commit: %v, want ErrLocked", err)
	}
	mustCommit(t, st, l, sessionstore.Commit{ExpectOffset: 10, NewOffset: 20, HashState: []byte("h20"), Length: -1})
	if err := st.ReleaseLease(ctx, l); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}

	l = mustLease(t, st, s.ID, 200*time.Millisecond, 0)
	mustCommit(t, st, l, sessionstore.Commit{ExpectOffset: 20, NewOffset: 30, HashState: []byte("h30"), Length: -1})
	time.Sleep(400 * time.Millisecond)
	if _, err := st.AcquireLease(ctx, s.ID, time.Second, 0); err != nil {
		t.Fatalf("AcquireLease after a plain commit and the TTL: %v, want the expired lease taken over", err)
	}
}

func testCommitDeferredLength(t *testing.T, st sessionstore.Store) {
	s, a := fixture()
	s.Length, a.SizeBytes = -1, -1
	if err := st.CreateUpload(t.Context(), s, a); err != nil {
		t.Fatal(err)
	}
	l := mustLease(t, st, s.ID, time.Second, 0)
	got := mustCommit(t, st, l, sessionstore.Commit{ExpectOffset: 0, NewOffset: 10, Length: -1})
	if got.Length != -1 {
		t.Fatalf("Length after a commit with Length -1: got %d, want -1", got.Length)
	}
	got = mustCommit(t, st, l, sessionstore.Commit{ExpectOffset: 10, NewOffset: 20, Length: 30})
	if got.Length != 30 {
		t.Fatalf("Length after a commit setting it: got %d, want 30", got.Length)
	}
	if got := mustSession(t, st, s.ID).Length; got != 30 {
		t.Fatalf("stored Length: got %d, want 30", got)
	}
	if got := mustAsset(t, st, a.ID).SizeBytes; got != 30 {
		t.Fatalf("asset SizeBytes after the length is known: got %d, want 30", got)
	}
	// Once set, the length cannot change, as with SetLength.
	_, err := st.Commit(t.Context(), l, sessionstore.Commit{ExpectOffset: 20, NewOffset: 25, Length: 40})
	if !errors.Is(err, sessionstore.ErrOffsetConflict) {
		t.Fatalf("commit changing a set length: got %v, want ErrOffsetConflict", err)
	}
	if got := mustSession(t, st, s.ID); got.Length != 30 || got.Offset != 20 {
		t.Fatalf("after the refused commit: got length %d offset %d, want 30 20", got.Length, got.Offset)
	}
}

func testCommitComplete(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	s, a := fixture()
	s.Length, a.SizeBytes = -1, -1 // completion also fixes a deferred length
	if err := st.CreateUpload(ctx, s, a); err != nil {
		t.Fatal(err)
	}
	l := mustLease(t, st, s.ID, time.Second, 1)
	mustCommit(t, st, l, sessionstore.Commit{ExpectOffset: 0, NewOffset: 600, Length: -1,
		Parts: []sessionstore.Part{{Number: 1, ETag: "e1", Size: 600}}})
	if _, err := st.ClaimProbe(ctx, "c1", 10*time.Millisecond, time.Minute); !errors.Is(err, sessionstore.ErrEmpty) {
		t.Fatalf("ClaimProbe before completion: got %v, want ErrEmpty", err)
	}
	sum := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	got := mustCommit(t, st, l, sessionstore.Commit{ExpectOffset: 600, NewOffset: 700, HashState: []byte("final"),
		Length: -1, Complete: true, SHA256: sum})
	if !got.Completed || got.Offset != 700 || got.Length != 700 {
		t.Fatalf("session after Complete: got %+v, want completed, offset and length 700", got)
	}
	equalSession(t, "stored session after Complete", mustSession(t, st, s.ID), got)
	if parts, err := st.Parts(ctx, s.ID); err != nil || len(parts) != 0 {
		t.Fatalf("Parts after Complete: got %v, %v; want none (dropped)", parts, err)
	}
	wantA := a
	wantA.State, wantA.SHA256, wantA.SizeBytes = sessionstore.StateReady, sum, 700
	equalAsset(t, "asset after Complete", mustAsset(t, st, a.ID), wantA)
	job, err := st.ClaimProbe(ctx, "c1", time.Second, time.Minute)
	if err != nil {
		t.Fatalf("ClaimProbe after Complete: %v", err)
	}
	if job.AssetID != a.ID || job.Attempts != 0 {
		t.Fatalf("probe job: got %+v, want asset %s, attempts 0", job, a.ID)
	}
	if _, err := st.ClaimProbe(ctx, "c2", 10*time.Millisecond, time.Minute); !errors.Is(err, sessionstore.ErrEmpty) {
		t.Fatalf("second ClaimProbe: got %v, want ErrEmpty (one job per completion)", err)
	}
}

func testCompletePartialNoAsset(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	s, _ := fixture()
	s.Partial, s.AssetID, s.Length = true, "", 50
	if err := st.CreateUpload(ctx, s, sessionstore.Asset{}); err != nil {
		t.Fatal(err)
	}
	l := mustLease(t, st, s.ID, time.Second, 0)
	got := mustCommit(t, st, l, sessionstore.Commit{NewOffset: 50, Length: -1, Complete: true, SHA256: "ab"})
	if !got.Completed {
		t.Fatalf("partial after Complete: got %+v, want completed", got)
	}
	if _, err := st.ClaimProbe(ctx, "c", 10*time.Millisecond, time.Minute); !errors.Is(err, sessionstore.ErrEmpty) {
		t.Fatalf("ClaimProbe after a partial completed: got %v, want ErrEmpty", err)
	}
}

func testSetLength(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	s, a := fixture()
	s.Length, a.SizeBytes = -1, -1
	if err := st.CreateUpload(ctx, s, a); err != nil {
		t.Fatal(err)
	}
	l := mustLease(t, st, s.ID, time.Second, 0)
	mustCommit(t, st, l, sessionstore.Commit{NewOffset: 100, Length: -1})
	wantErr(t, "SetLength below the offset", st.SetLength(ctx, s.ID, 99), sessionstore.ErrOffsetConflict)
	if err := st.SetLength(ctx, s.ID, 100); err != nil {
		t.Fatalf("SetLength(100) at offset 100: %v", err)
	}
	if err := st.SetLength(ctx, s.ID, 100); err != nil {
		t.Fatalf("SetLength again with the same value: got %v, want nil", err)
	}
	wantErr(t, "SetLength to another value", st.SetLength(ctx, s.ID, 200), sessionstore.ErrOffsetConflict)
	if got := mustSession(t, st, s.ID); got.Length != 100 || got.Offset != 100 {
		t.Fatalf("session after SetLength: got length %d offset %d, want 100 100", got.Length, got.Offset)
	}
	if got := mustAsset(t, st, a.ID).SizeBytes; got != 100 {
		t.Fatalf("asset SizeBytes after SetLength: got %d, want 100", got)
	}
	// A declared length cannot be changed either.
	s2, _ := create(t, st)
	wantErr(t, "SetLength on a declared length", st.SetLength(ctx, s2.ID, 5), sessionstore.ErrOffsetConflict)
	if err := st.SetLength(ctx, s2.ID, s2.Length); err != nil {
		t.Fatalf("SetLength to the declared length: got %v, want nil", err)
	}
}

func testDeleteUpload(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	s, a := create(t, st)
	l := mustLease(t, st, s.ID, time.Second, 1)
	committed := mustCommit(t, st, l, sessionstore.Commit{NewOffset: 10, HashState: []byte("h"),
		Storage: []byte("mpu-1"), Length: -1, Parts: []sessionstore.Part{{Number: 1, ETag: "e", Size: 10}}})
	old, err := st.DeleteUpload(ctx, s.ID)
	if err != nil {
		t.Fatalf("DeleteUpload: %v", err)
	}
	equalSession(t, "DeleteUpload's returned session", old, committed)
	_, err = st.Session(ctx, s.ID)
	wantErr(t, "Session after delete", err, sessionstore.ErrNotFound)
	_, err = st.Asset(ctx, a.ID)
	wantErr(t, "Asset after delete", err, sessionstore.ErrNotFound)
	_, err = st.Parts(ctx, s.ID)
	wantErr(t, "Parts after delete", err, sessionstore.ErrNotFound)
	_, err = st.DeleteUpload(ctx, s.ID)
	wantErr(t, "second DeleteUpload", err, sessionstore.ErrNotFound)
	_, err = st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: 10, NewOffset: 20, Length: -1})
	if !errors.Is(err, sessionstore.ErrNotFound) && !errors.Is(err, sessionstore.ErrLeaseLost) {
		t.Fatalf("Commit after delete: got %v, want ErrNotFound or ErrLeaseLost", err)
	}
	_, err = st.AcquireLease(ctx, s.ID, time.Second, 0)
	wantErr(t, "AcquireLease after delete", err, sessionstore.ErrNotFound)
	// Deleting a partial (no asset) works too.
	p, _ := fixture()
	p.Partial, p.AssetID = true, ""
	if err := st.CreateUpload(ctx, p, sessionstore.Asset{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DeleteUpload(ctx, p.ID); err != nil {
		t.Fatalf("DeleteUpload(partial): %v", err)
	}
}

func testExpired(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	past := now().Add(-time.Hour)
	mk := func(expires time.Time) sessionstore.Session {
		s, a := fixture()
		s.CreatedAt, s.ExpiresAt, a.CreatedAt = expires.Add(-time.Hour), expires, expires.Add(-time.Hour)
		if err := st.CreateUpload(ctx, s, a); err != nil {
			t.Fatal(err)
		}
		return s
	}
	e1, e2 := mk(past), mk(past.Add(time.Minute))
	done := mk(past)
	deleted := mk(past)
	mk(now().Add(time.Hour)) // not yet expired
	l := mustLease(t, st, done.ID, time.Second, 0)
	mustCommit(t, st, l, sessionstore.Commit{NewOffset: done.Length, Length: -1, Complete: true, SHA256: "x"})
	if _, err := st.DeleteUpload(ctx, deleted.ID); err != nil {
		t.Fatal(err)
	}
	got, err := st.Expired(ctx, now(), 100)
	if err != nil {
		t.Fatalf("Expired: %v", err)
	}
	ids := make([]string, 0, len(got))
	for _, s := range got {
		ids = append(ids, s.ID)
		if s.ID == e1.ID {
			equalSession(t, "expired session", s, e1)
		}
	}
	slices.Sort(ids)
	want := []string{e1.ID, e2.ID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("Expired: got %v, want %v", ids, want)
	}
	got, err = st.Expired(ctx, now(), 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("Expired(limit 1): got %d sessions, %v; want 1", len(got), err)
	}
	got, err = st.Expired(ctx, past.Add(-time.Minute), 100)
	if err != nil || len(got) != 0 {
		t.Fatalf("Expired before any expiry: got %d sessions, %v; want 0", len(got), err)
	}
}

// testCommitSlidesExpiry: an upload that is written to does not expire.
func testCommitSlidesExpiry(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	s, a := fixture()
	s.ExpiresAt = now().Add(-time.Minute) // due, but still being written
	if err := st.CreateUpload(ctx, s, a); err != nil {
		t.Fatal(err)
	}
	other, _ := create(t, st) // expires in 24 h
	listed := func(at time.Time) bool {
		t.Helper()
		got, err := st.Expired(ctx, at, 100)
		if err != nil {
			t.Fatalf("Expired(%v): %v", at, err)
		}
		return slices.ContainsFunc(got, func(e sessionstore.Session) bool { return e.ID == s.ID })
	}
	if !listed(now()) {
		t.Fatal("Expired before the commit: session not listed, want it (it is due)")
	}
	l := mustLease(t, st, s.ID, time.Second, 0)
	// A commit without ExpiresAt keeps the expiry.
	got := mustCommit(t, st, l, sessionstore.Commit{NewOffset: 10, Length: -1})
	if !sameSecond(got.ExpiresAt, s.ExpiresAt) {
		t.Fatalf("ExpiresAt after a commit without one: got %v, want %v", got.ExpiresAt, s.ExpiresAt)
	}
	slid := now().Add(time.Hour)
	got = mustCommit(t, st, l, sessionstore.Commit{ExpectOffset: 10, NewOffset: 20, Length: -1, ExpiresAt: slid})
	if !sameSecond(got.ExpiresAt, slid) {
		t.Fatalf("ExpiresAt returned by the commit: got %v, want %v", got.ExpiresAt, slid)
	}
	equalSession(t, "stored session after the sliding commit", mustSession(t, st, s.ID), got)
	// Twice: a store that repairs its index lazily must not list it either.
	for i := range 2 {
		if listed(now()) {
			t.Fatalf("Expired (call %d) after the commit slid the expiry to %v: session listed, want not", i+1, slid)
		}
	}
	// The new expiry is indexed, not lost: once it is due, it is listed.
	if !listed(slid.Add(time.Minute)) {
		t.Fatalf("Expired after the new expiry %v: session not listed, want it", slid)
	}
	// Sliding it again, and then completing, leaves nothing listed.
	later := now().Add(2 * time.Hour)
	mustCommit(t, st, l, sessionstore.Commit{ExpectOffset: 20, NewOffset: 30, Length: -1, ExpiresAt: later})
	if listed(slid.Add(time.Minute)) {
		t.Fatalf("Expired between the two expiries: session listed, want not")
	}
	if !listed(later.Add(time.Minute)) {
		t.Fatalf("Expired after the second expiry %v: session not listed, want it", later)
	}
	mustCommit(t, st, l, sessionstore.Commit{ExpectOffset: 30, NewOffset: s.Length, Length: -1,
		Complete: true, SHA256: "ab", ExpiresAt: later.Add(time.Hour)})
	if listed(later.Add(2 * time.Hour)) {
		t.Fatal("Expired after completion: session listed, want not")
	}
	if got, err := st.Expired(ctx, now(), 100); err != nil || slices.ContainsFunc(got, func(e sessionstore.Session) bool { return e.ID == other.ID }) {
		t.Fatalf("Expired(now): got %v, %v; the untouched upload is not due", got, err)
	}
}
