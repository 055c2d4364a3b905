package bolt_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/roughy/ingest/sessionstore"
)

// openFixture copies the fixture into a fresh data dir and opens it.
func openFixture(t *testing.T) sessionstore.Store {
	t.Helper()
	st := newLocal(t, copyFixture(t))
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return st
}

// copyFixture copies testdata/datadir-v0.db.gz, a roughy.db written by the
// embedded store as it was before the backends moved into their own
// packages, into a fresh data dir and answers its path.
func copyFixture(t *testing.T) string {
	t.Helper()
	gz, err := os.ReadFile(filepath.Join("testdata", "datadir-v0.db.gz"))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
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
	return path
}

// expect fails the test unless err is nil and got, formatted with %v,
// is want.
func expect(t *testing.T, what string, got any, err error, want string) {
	t.Helper()
	if g := fmt.Sprintf("%v", got); err != nil || g != want {
		t.Fatalf("%s: got %s, %v; want %s", what, g, err, want)
	}
}

// TestOpensOldDataDir: an existing data dir keeps working across the
// upgrade. The fixture holds an upload in progress with two committed
// parts (one from before part checksums), a completed upload with its
// probe job, a key, quota limits and usage, a webhook with a queued
// delivery and its record, and a direct upload grant.
func TestOpensOldDataDir(t *testing.T) {
	st := openFixture(t)
	checkOldUploads(t, st)
	checkOldAccount(t, st)
	checkOldQueues(t, st)
}

// checkOldUploads reads the uploads back and goes on with the one in
// progress.
func checkOldUploads(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	s1, err := st.Session(ctx, "s1")
	expect(t, "session s1", []any{s1.Offset, s1.Length, string(s1.HashState), string(s1.Storage), s1.NextPart,
		s1.CreatedAt.Format(time.RFC3339)}, err, `[200 300 h200 {"u":"x"} 3 2026-12-01T10:00:00Z]`)
	parts, err := st.Parts(ctx, "s1")
	expect(t, "parts of s1", parts, err, `[{1 "e1" 100 0 AAAAAA==} {2 "e2" 100 100 }]`)
	l, err := st.AcquireLease(ctx, "s1", time.Minute, 1)
	expect(t, "first part of a new lease on s1", l.FirstPart, err, "3")
	_, err = st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: 200, NewOffset: 300, Length: -1, Complete: true, SHA256: "def"})
	expect(t, "completing s1", "", err, "")
	a, err := st.Asset(ctx, "s2")
	expect(t, "asset s2", []any{a.State, a.SHA256, a.SizeBytes}, err, "[ready abc 5]")
}

// checkOldAccount reads back the key, the quota, the webhook and the
// direct upload grant.
func checkOldAccount(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	k, err := st.KeyByHash(ctx, "hash1")
	expect(t, "key", []any{k.ID, k.Prefix}, err, "[k1 rk_live_x]")
	// s2 is stored; s1 still holds its 300 bytes (completed above, not
	// settled).
	lim, use, err := st.Quota(ctx, "acme")
	expect(t, "quota", []any{lim, use}, err, "[{1073741824 -1 -2} {5 1 300}]")
	h, err := st.Webhook(ctx, "h1")
	expect(t, "webhook", []any{h.URL, h.Secret, h.Events}, err, "[https://example.com/hook whsec [asset.ready]]")
	d, err := st.DirectUpload(ctx, "d1")
	expect(t, "direct upload", []any{d.Type, d.MaxSize, string(d.Secret)}, err, "[audio 1000 secret]")
}

// checkOldQueues counts the queues (the probe job of the fixture and the
// one of s1, completed above; the webhook delivery) and claims the queued
// probe job and webhook delivery.
func checkOldQueues(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	q, err := st.(sessionstore.QueueLengther).QueueLengths(ctx)
	expect(t, "queue lengths", q, err, "{2 1}")
	ps, err := st.(sessionstore.ProbeQueueStatser).ProbeQueueStats(ctx)
	expect(t, "probe jobs and dead letters", []any{ps.Jobs, ps.Dead}, err, "[2 0]")
	job, err := st.ClaimProbe(ctx, "c", time.Second, time.Minute)
	expect(t, "probe job", job.AssetID, err, "s2")
	wj, err := st.ClaimWebhook(ctx, "c", time.Second, time.Minute)
	expect(t, "webhook job", []any{wj.HookID, wj.Event.ID, wj.Event.Asset.ID}, err, "[h1 ev1 s2]")
	ds, err := st.WebhookDeliveries(ctx, "h1")
	var got []string
	for _, d := range ds {
		got = append(got, d.EventID+" "+d.State)
	}
	expect(t, "delivery records", got, err, "[ev1 pending]")
}

// TestOldHookLogCounted: a delivery log written before a log's bucket
// sequence kept its record count is counted at its next record, the old
// record included.
func TestOldHookLogCounted(t *testing.T) {
	path := copyFixture(t)
	st := newLocal(t, path)
	n, err := st.EnqueueWebhookEvent(t.Context(), "acme", sessionstore.WebhookEvent{ID: "ev2", Type: "asset.ready", Time: time.Now()})
	expect(t, "endpoints of the new event", n, err, "1")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("webhooklog")).Bucket([]byte("h1"))
		expect(t, "records and sequence of the log of h1", []any{b.Stats().KeyN, b.Sequence()}, nil, "[2 2]")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
