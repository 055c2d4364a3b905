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
