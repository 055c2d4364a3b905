package redis_test

import (
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/sessionstore/redis"
)

// TestRedisCreateAndSettleOneTrip: on standalone, a creation with its
// quota hold is one round trip, and so is the commit that completes the
// upload and settles the hold (three and two before: ZADD of the hold's
// index entry, the reservation script and the creation script; the
// commit script, then the settle script and the index entry's ZREM).
func TestRedisCreateAndSettleOneTrip(t *testing.T) {
	st := newRedis(t, testsvc.StartRedis(t))
	ctx := t.Context()
	creation := func(id string) sessionstore.Creation {
		now := time.Now().UTC().Truncate(time.Second)
		return sessionstore.Creation{
			Session: sessionstore.Session{ID: id, Account: "acme", AssetID: id, Length: 100, NextPart: 1,
				CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
			Asset: sessionstore.Asset{ID: id, Account: "acme", SessionID: id, Type: "video",
				State: sessionstore.StateUploading, SizeBytes: 100, CreatedAt: now},
			Reserve: 100,
		}
	}
	complete := func(id string) {
		t.Helper()
		l, err := st.AcquireLease(ctx, id, time.Minute, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: 0, NewOffset: 100, Length: -1,
			Complete: true, SHA256: "ff", Settle: true}); err != nil {
			t.Fatalf("Commit %s: %v", id, err)
		}
	}
	// The first of each loads its script (EVALSHA, NOSCRIPT, EVAL).
	for _, id := range []string{"warm", "up-1"} {
		if err := st.CreateReserved(ctx, creation(id)); err != nil {
			t.Fatalf("CreateReserved %s: %v", id, err)
		}
	}
	complete("warm")
	count := redis.CountRoundTrips(st)
	if err := st.CreateReserved(ctx, creation("up-2")); err != nil {
		t.Fatalf("CreateReserved: %v", err)
	}
	if got := count.Trips.Load(); got != 1 {
		t.Fatalf("creation: %d round trips, want 1", got)
	}
	l, err := st.AcquireLease(ctx, "up-2", time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	count.Trips.Store(0)
	if _, err := st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: 0, NewOffset: 100, Length: -1,
		Complete: true, SHA256: "ff", Settle: true}); err != nil {
		t.Fatalf("Commit up-2: %v", err)
	}
	if got := count.Trips.Load(); got != 1 {
		t.Fatalf("completing commit that settles: %d round trips, want 1", got)
	}
	// warm and up-2 settled at 100 bytes each, up-1 still holds 100.
	_, u, err := st.Quota(ctx, "acme")
	if err != nil || u != (sessionstore.QuotaUsage{BytesStored: 200, Uploads: 1, BytesReserved: 100}) {
		t.Fatalf("quota: %+v, %v; want 200 stored and one upload holding 100", u, err)
	}
	holds, err := st.QuotaHolds(ctx, time.Now().Add(time.Hour), 10)
	if err != nil || len(holds) != 1 || holds[0].UploadID != "up-1" {
		t.Fatalf("quota holds: %+v, %v; want up-1's alone", holds, err)
	}
}
