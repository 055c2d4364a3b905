package storetest

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

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
