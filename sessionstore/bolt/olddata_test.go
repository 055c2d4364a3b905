package bolt_test

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// openFixture copies testdata/datadir-v0.db.gz, a roughy.db written by the
// embedded store as it was before the backends moved into their own
// packages, into a fresh data dir and opens it.
func openFixture(t *testing.T) sessionstore.Store {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "datadir-v0.db.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "roughy.db")
	out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, zr); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	st := newLocal(t, path)
	t.Cleanup(func() { st.Close() })
	return st
}

// TestOpensOldDataDir: an existing data dir keeps working across the
// upgrade. The fixture holds an upload in progress with two committed
// parts (one from before part checksums), a completed upload with its
// probe job, a key, quota limits and usage, a webhook with a queued
// delivery and its record, and a direct upload grant.
func TestOpensOldDataDir(t *testing.T) {
	ctx := t.Context()
	st := openFixture(t)
	created := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

	s1, err := st.Session(ctx, "s1")
	if err != nil || s1.Offset != 200 || s1.Length != 300 || string(s1.HashState) != "h200" ||
		string(s1.Storage) != `{"u":"x"}` || s1.NextPart != 3 || !s1.CreatedAt.Equal(created) {
		t.Fatalf("session s1: got %+v, %v", s1, err)
	}
	parts, err := st.Parts(ctx, "s1")
	want := []sessionstore.Part{{Number: 1, ETag: `"e1"`, Size: 100, Offset: 0, Checksum: "AAAAAA=="},
		{Number: 2, ETag: `"e2"`, Size: 100, Offset: 100}}
	if err != nil || !slices.Equal(parts, want) {
		t.Fatalf("parts of s1: got %+v, %v; want %+v", parts, err, want)
	}
	// The upload goes on where it stopped.
	l, err := st.AcquireLease(ctx, "s1", time.Minute, 1)
	if err != nil || l.FirstPart != 3 {
		t.Fatalf("lease on s1: got %+v, %v; want first part 3", l, err)
	}
	if _, err := st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: 200, NewOffset: 300, Length: -1,
		Complete: true, SHA256: "def"}); err != nil {
		t.Fatalf("completing s1: %v", err)
	}

	if a, err := st.Asset(ctx, "s2"); err != nil || a.State != sessionstore.StateReady || a.SHA256 != "abc" || a.SizeBytes != 5 {
		t.Fatalf("asset s2: got %+v, %v", a, err)
	}
	job, err := st.ClaimProbe(ctx, "c", time.Second, time.Minute)
	if err != nil || job.AssetID != "s2" {
		t.Fatalf("probe job: got %+v, %v; want asset s2", job, err)
	}
	if k, err := st.KeyByHash(ctx, "hash1"); err != nil || k.ID != "k1" || k.Prefix != "rk_live_x" {
		t.Fatalf("key: got %+v, %v", k, err)
	}
	lim, use, err := st.Quota(ctx, "acme")
	wantLim := sessionstore.QuotaLimits{BytesStored: 1 << 30, Uploads: sessionstore.QuotaDefault, BytesReserved: sessionstore.QuotaZero}
	// s1 held 300 bytes and completed above with 300: all of it stored
	// once settled; until then its hold still counts.
	if err != nil || lim != wantLim || use.BytesStored != 5 || use.Uploads != 1 || use.BytesReserved != 300 {
		t.Fatalf("quota: got %+v %+v, %v; want limits %+v, 5 stored, 1 upload, 300 reserved", lim, use, err, wantLim)
	}
	if h, err := st.Webhook(ctx, "h1"); err != nil || h.URL != "https://example.com/hook" || h.Secret != "whsec" {
		t.Fatalf("webhook: got %+v, %v", h, err)
	}
	wj, err := st.ClaimWebhook(ctx, "c", time.Second, time.Minute)
	if err != nil || wj.HookID != "h1" || wj.Event.ID != "ev1" || wj.Event.Asset.ID != "s2" {
		t.Fatalf("webhook job: got %+v, %v", wj, err)
	}
	ds, err := st.WebhookDeliveries(ctx, "h1")
	if err != nil || len(ds) != 1 || ds[0].EventID != "ev1" || ds[0].State != sessionstore.DeliveryPending {
		t.Fatalf("deliveries: got %+v, %v", ds, err)
	}
	if d, err := st.DirectUpload(ctx, "d1"); err != nil || d.Type != "audio" || d.MaxSize != 1000 || string(d.Secret) != "secret" {
		t.Fatalf("direct upload: got %+v, %v", d, err)
	}
}
