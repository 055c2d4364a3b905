package bolt_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/sessionstore/storetest"

	"github.com/roughy/ingest/sessionstore/bolt"
)

func newLocal(t *testing.T, path string) *bolt.Store {
	t.Helper()
	st, err := bolt.New(path)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return st
}

func TestLocal(t *testing.T) {
	paths := map[sessionstore.Store]string{}
	open := func(t *testing.T, path string) sessionstore.Store {
		st := newLocal(t, path)
		paths[st] = path
		t.Cleanup(func() {
			if err := st.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return st
	}
	storetest.Run(t, func(t *testing.T) sessionstore.Store {
		return open(t, filepath.Join(t.TempDir(), "roughy.db"))
	}, storetest.Fleet{
		// One process owns the file: the store is its only node.
		Peer: func(_ *testing.T, st sessionstore.Store) sessionstore.Store { return st },
		// A kill -9 ends the process; the next one opens the same file.
		Crash: func(t *testing.T, st sessionstore.Store) sessionstore.Store {
			if err := st.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return open(t, paths[st])
		},
	})
}

// TestLocalReopen checks that everything acknowledged survives Close and a
// new New on the same file, that fencing tokens keep growing, and
// that part reservations are not handed out twice.
func TestLocalReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "roughy.db")
	st := newLocal(t, path)

	now := time.Now().UTC().Truncate(time.Second)
	s := sessionstore.Session{ID: "s1", Account: "acme", AssetID: "s1", Length: 300, NextPart: 1,
		Metadata: "type dmlkZW8=", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	a := sessionstore.Asset{ID: "s1", Account: "acme", SessionID: "s1", Type: "video",
		State: sessionstore.StateUploading, SizeBytes: 300, Metadata: map[string]string{"type": "video"},
		StorageKey: "uploads/s1", CreatedAt: now}
	if err := st.CreateUpload(ctx, s, a); err != nil {
		t.Fatal(err)
	}
	l, err := st.AcquireLease(ctx, "s1", time.Minute, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: 0, NewOffset: 200,
		HashState: []byte("h200"), Storage: []byte("st"), Length: -1,
		Parts: []sessionstore.Part{{Number: 1, ETag: "e1", Size: 200}}}); err != nil {
		t.Fatal(err)
	}
	s2 := s
	s2.ID, s2.AssetID = "s2", "s2"
	a2 := a
	a2.ID, a2.SessionID = "s2", "s2"
	if err := st.CreateUpload(ctx, s2, a2); err != nil {
		t.Fatal(err)
	}
	l2, err := st.AcquireLease(ctx, "s2", time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commit(ctx, l2, sessionstore.Commit{NewOffset: 300, Length: -1, Complete: true, SHA256: "abc"}); err != nil {
		t.Fatal(err)
	}
	key := sessionstore.Key{ID: "k1", Account: "acme", Hash: "h1", Prefix: "rk_live_x", CreatedAt: now}
	if err := st.CreateKey(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := st.Ping(ctx); !errors.Is(err, sessionstore.ErrUnavailable) {
		t.Fatalf("Ping after Close: got %v, want ErrUnavailable", err)
	}

	st = newLocal(t, path)
	t.Cleanup(func() { st.Close() })
	got, err := st.Session(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Offset != 200 || string(got.HashState) != "h200" || string(got.Storage) != "st" || got.NextPart != 4 {
		t.Fatalf("session after reopen: got %+v, want offset 200, hash h200, storage st, next part 4", got)
	}
	parts, err := st.Parts(ctx, "s1")
	if err != nil || len(parts) != 1 || parts[0].ETag != "e1" {
		t.Fatalf("parts after reopen: got %v, %v", parts, err)
	}
	// The old process is gone, so its lease is too; the new token is larger
	// and the reservation continues after the old one.
	nl, err := st.AcquireLease(ctx, "s1", time.Minute, 2)
	if err != nil {
		t.Fatalf("AcquireLease after reopen: %v", err)
	}
	if nl.Token <= l2.Token || nl.FirstPart != 4 {
		t.Fatalf("lease after reopen: got token %d first part %d, want token > %d, first part 4", nl.Token, nl.FirstPart, l2.Token)
	}
	if _, err := st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: 200, NewOffset: 300, Length: -1}); !errors.Is(err, sessionstore.ErrLeaseLost) {
		t.Fatalf("Commit with a lease of the old process: got %v, want ErrLeaseLost", err)
	}
	as, err := st.Asset(ctx, "s2")
	if err != nil || as.State != sessionstore.StateReady || as.SHA256 != "abc" || as.SizeBytes != 300 {
		t.Fatalf("completed asset after reopen: got %+v, %v", as, err)
	}
	// The probe job enqueued by the completion survived, unclaimed.
	job, err := st.ClaimProbe(ctx, "c", time.Second, time.Minute)
	if err != nil || job.AssetID != "s2" {
		t.Fatalf("probe job after reopen: got %+v, %v; want asset s2", job, err)
	}
	if k, err := st.KeyByHash(ctx, "h1"); err != nil || k.ID != "k1" {
		t.Fatalf("key after reopen: got %+v, %v", k, err)
	}
}

// TestLocalClaimedJobSurvivesRestart: a job claimed but not acked when the
// process dies is handed out again after the restart.
func TestLocalClaimedJobSurvivesRestart(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "roughy.db")
	st := newLocal(t, path)
	now := time.Now()
	if err := st.CreateUpload(ctx, sessionstore.Session{ID: "s", AssetID: "s", Length: 1, CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		sessionstore.Asset{ID: "s", SessionID: "s", State: sessionstore.StateUploading, SizeBytes: 1}); err != nil {
		t.Fatal(err)
	}
	l, err := st.AcquireLease(ctx, "s", time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commit(ctx, l, sessionstore.Commit{NewOffset: 1, Length: -1, Complete: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClaimProbe(ctx, "dying", time.Second, time.Hour); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st = newLocal(t, path)
	t.Cleanup(func() { st.Close() })
	job, err := st.ClaimProbe(ctx, "new", time.Second, time.Hour)
	if err != nil || job.AssetID != "s" {
		t.Fatalf("claim after restart: got %+v, %v; want asset s", job, err)
	}
}
