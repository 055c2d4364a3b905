package upload

import (
	"errors"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// TestStoreEventsQueues: an event queued before a change reaches the
// account's endpoint subscribed to it, marked to be verified, with the
// id of that change; an asset without an id (a partial's) queues nothing.
func TestStoreEventsQueues(t *testing.T) {
	onBoth(t, svcConfig, func(t *testing.T, e *svcEnv) {
		ctx := t.Context()
		hook := sessionstore.Webhook{ID: "wh-1", Account: "acme", URL: "https://example.com/hook",
			Events: []string{sessionstore.EventAssetReady}, Secret: "s", CreatedAt: time.Now().UTC().Truncate(time.Second)}
		if err := e.store.CreateWebhook(ctx, hook); err != nil {
			t.Fatalf("CreateWebhook: %v", err)
		}
		q := StoreEvents{Store: e.store}
		if err := q.EmitBefore(ctx, sessionstore.EventAssetReady, sessionstore.Asset{}); err != nil {
			t.Fatalf("EmitBefore of a partial: %v", err)
		}
		a := sessionstore.Asset{ID: "as-1", Account: "acme", SessionID: "as-1"}
		if err := q.EmitBefore(ctx, sessionstore.EventAssetReady, a); err != nil {
			t.Fatalf("EmitBefore: %v", err)
		}
		job, err := e.store.ClaimWebhook(ctx, "test", 0, time.Minute)
		if err != nil {
			t.Fatalf("ClaimWebhook: %v", err)
		}
		ev := job.Event
		if job.HookID != hook.ID || ev.Type != sessionstore.EventAssetReady || ev.Asset.ID != a.ID || !ev.Verify ||
			ev.ID != EventID("acme", sessionstore.EventAssetReady, a.ID, false) {
			t.Fatalf("queued: hook %s event %+v; want %s, %s of %s to verify, id of the change", job.HookID, ev, hook.ID, sessionstore.EventAssetReady, a.ID)
		}
		if _, err := e.store.ClaimWebhook(ctx, "test", 0, time.Minute); !errors.Is(err, sessionstore.ErrEmpty) {
			t.Fatalf("a second job: got %v, want ErrEmpty (the partial queued nothing)", err)
		}
	})
}

// TestEventIDStable: an event's id is derived from the change it reports
// and stays what receivers already saw for it: the pinned ids were made
// by the first implementation.
func TestEventIDStable(t *testing.T) {
	for _, c := range []struct {
		account, typ, asset string
		failed              bool
		want                string
	}{
		{"acme", "asset.ready", "019deafa-0000-7000-8000-00000000dead", false, "14b4b8bb-5f6b-83c4-9722-0ee8b55444cd"},
		{"globex", "asset.failed", "as-1", true, "cc52b209-abf9-8a92-8d33-1188ed954d3d"},
		{"", "", "", false, "23b6450d-6375-895d-bd2d-587b279a42a4"},
		{"a\x00b", "é", "x", true, "44b81438-38c4-8e9d-b48e-a3402a9677e5"},
	} {
		if got := EventID(c.account, c.typ, c.asset, c.failed); got != c.want {
			t.Errorf("EventID(%q, %q, %q, %v) = %s, want %s", c.account, c.typ, c.asset, c.failed, got, c.want)
		}
	}
	// Made on every queued event: the hashed bytes and the id, no more.
	if n := testing.AllocsPerRun(100, func() { EventID("acme", "asset.ready", "as-1", false) }); n > 2 {
		t.Errorf("EventID: %v allocations, want at most 2", n)
	}
}

// TestFinishQueuesReady: an upload whose bytes are all committed but that
// is not complete (its length set to its offset after the last append) is
// completed by Finish, whose completing commit queues the asset.ready
// event for the account's subscribed endpoint (Commit.Event): the asset
// is ready and the job is there, once.
func TestFinishQueuesReady(t *testing.T) {
	onBoth(t, svcConfig, func(t *testing.T, e *svcEnv) {
		ctx := t.Context()
		e.svc.Events = StoreEvents{Store: e.store}
		hook := sessionstore.Webhook{ID: "wh-ready", Account: "acme", URL: "https://example.com/hook",
			Events: []string{sessionstore.EventAssetReady}, Secret: "s", CreatedAt: time.Now().UTC().Truncate(time.Second)}
		if err := e.store.CreateWebhook(ctx, hook); err != nil {
			t.Fatalf("CreateWebhook: %v", err)
		}
		data := []byte("eight by")
		sess := e.create(-1)
		if _, err := e.appendBytes(sess, 0, data); err != nil {
			t.Fatalf("append: %v", err)
		}
		if err := e.store.SetLength(ctx, sess.ID, int64(len(data))); err != nil {
			t.Fatalf("SetLength: %v", err)
		}
		done, err := e.svc.Finish(ctx, e.session(sess.ID))
		if err != nil || !done.Completed {
			t.Fatalf("Finish: %+v, %v; want the upload complete", done, err)
		}
		if a, err := e.store.Asset(ctx, sess.AssetID); err != nil || a.State != sessionstore.StateReady {
			t.Fatalf("asset after Finish: %+v, %v; want ready", a, err)
		}
		job, err := e.store.ClaimWebhook(ctx, "test", 0, time.Minute)
		if err != nil {
			t.Fatalf("ClaimWebhook: %v", err)
		}
		if job.HookID != hook.ID || job.Event.Type != sessionstore.EventAssetReady || job.Event.Asset.ID != sess.AssetID || !job.Event.Verify {
			t.Fatalf("queued: hook %s event %+v; want %s of %s for %s", job.HookID, job.Event, sessionstore.EventAssetReady, sess.AssetID, hook.ID)
		}
		if _, err := e.store.ClaimWebhook(ctx, "test", 0, time.Minute); !errors.Is(err, sessionstore.ErrEmpty) {
			t.Fatalf("a second job: got %v, want ErrEmpty", err)
		}
	})
}
