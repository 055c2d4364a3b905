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
	t.Run("HeadFence", func(t *testing.T) { testHeadFence(t, newStore(t), fleet) })
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
	runCreateReserved(t, newStore)
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
