package proxy

import (
	"net/http"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// TestQuotaSweepRepairsCrash: holds a crash left behind (a reservation
// whose creation never happened, a completion that was not settled) are
// released or settled by the janitor's sweep; a hold of an upload still in
// progress is kept.
func TestQuotaSweepRepairsCrash(t *testing.T) {
	e := newEnv(t, nil, nil)
	ctx := t.Context()
	live := e.create("acme", 100)
	// A node died between reserving and creating: no session behind it.
	if err := e.store.ReserveQuota(ctx, "acme", "ghost", 1000, sessionstore.QuotaLimits{}); err != nil {
		t.Fatal(err)
	}
	// A node died between completing and settling.
	now := time.Now().UTC()
	done := sessionstore.Session{ID: "done", Account: "acme", Length: 30, Offset: 30, Completed: true,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := e.store.CreateUpload(ctx, done, sessionstore.Asset{}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.ReserveQuota(ctx, "acme", "done", 30, sessionstore.QuotaLimits{}); err != nil {
		t.Fatal(err)
	}
	usage := func() sessionstore.QuotaUsage {
		t.Helper()
		_, u, err := e.store.Quota(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	if got, want := usage(), (sessionstore.QuotaUsage{Uploads: 3, BytesReserved: 1130}); got != want {
		t.Fatalf("before the sweep: usage %+v, want %+v", got, want)
	}
	// Within the grace period nothing is touched: a creation may be
	// between its reservation and its session.
	e.srv.sweepQuota(ctx, time.Now())
	if got, want := usage(), (sessionstore.QuotaUsage{Uploads: 3, BytesReserved: 1130}); got != want {
		t.Fatalf("sweep within the grace: usage %+v, want %+v", got, want)
	}
	e.srv.sweepQuota(ctx, time.Now().Add(2*quotaSweepGrace))
	if got, want := usage(), (sessionstore.QuotaUsage{BytesStored: 30, Uploads: 1, BytesReserved: 100}); got != want {
		t.Fatalf("after the sweep: usage %+v, want %+v", got, want)
	}
	// The live upload's hold was touched: the next sweep skips it.
	hs, err := e.store.QuotaHolds(ctx, time.Now().Add(-time.Second), 10)
	if err != nil || len(hs) != 0 {
		t.Fatalf("holds older than a second after the sweep: got %+v %v, want none (%s touched)", hs, err, live.SessionID)
	}
}

// TestQuotaRoute: GET /api/v1/quota shows the account's limits (its own,
// else the defaults; null = unlimited) and usage, and needs a key.
func TestQuotaRoute(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.QuotaDefaults = sessionstore.QuotaLimits{Uploads: 5} }, nil)
	if err := e.store.SetQuota(t.Context(), "acme", sessionstore.QuotaLimits{BytesStored: 1 << 30, Uploads: -1, BytesReserved: -1}); err != nil {
		t.Fatal(err)
	}
	e.create("acme", 100)
	r := e.do("GET", quotaPath, hdr("Authorization", "Bearer "+e.keys["acme"]), nil)
	want := `{"account":"acme","limits":{"bytes_stored":1073741824,"uploads":5,"bytes_reserved":null},` +
		`"usage":{"bytes_stored":0,"uploads":1,"bytes_reserved":100}}`
	if r.status != http.StatusOK || string(r.body) != want {
		t.Fatalf("GET %s: got %d %s, want 200 %s", quotaPath, r.status, r.body, want)
	}
	if r := e.do("GET", quotaPath, nil, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("GET %s without a key: got %d, want 401", quotaPath, r.status)
	}
}
