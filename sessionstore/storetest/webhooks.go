package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// runWebhooks adds the webhook cases to the suite. Each case
// settles every job it queues: stores may share a queue between cases.
func runWebhooks(t *testing.T, newStore func(t *testing.T) sessionstore.Store) {
	t.Run("Webhooks", func(t *testing.T) { testWebhooks(t, newStore(t)) })
	t.Run("WebhookQueueRetryDeliver", func(t *testing.T) { testWebhookRetryDeliver(t, newStore(t)) })
	t.Run("WebhookReclaim", func(t *testing.T) { testWebhookReclaim(t, newStore(t)) })
	t.Run("WebhookDead", func(t *testing.T) { testWebhookDead(t, newStore(t)) })
	t.Run("WebhookVerify", func(t *testing.T) { testWebhookVerify(t, newStore(t)) })
	t.Run("WebhookDeliveriesByTime", func(t *testing.T) { testWebhookDeliveriesByTime(t, newStore(t)) })
	t.Run("AssetRecord", func(t *testing.T) { testAssetRecord(t, newStore(t)) })
}

func newHook(t *testing.T, st sessionstore.Store, account string, events ...string) sessionstore.Webhook {
	t.Helper()
	h := sessionstore.Webhook{ID: newID(), Account: account, URL: "http://127.0.0.1:1/hook", Events: events,
		Secret: "whsec_" + newID(), CreatedAt: time.Now().UTC()}
	if err := st.CreateWebhook(t.Context(), h); err != nil {
		t.Fatalf("CreateWebhook: %v", err)
	}
	return h
}

func newEvent(typ string) sessionstore.WebhookEvent {
	_, a := fixture()
	return sessionstore.WebhookEvent{ID: newID(), Type: typ, Time: now(), Asset: a}
}

func mustClaimHook(t *testing.T, st sessionstore.Store, consumer string, block, reclaim time.Duration) sessionstore.WebhookJob {
	t.Helper()
	j, err := st.ClaimWebhook(t.Context(), consumer, block, reclaim)
	if err != nil {
		t.Fatalf("ClaimWebhook(%s): %v", consumer, err)
	}
	return j
}

func wantNoHookJob(t *testing.T, st sessionstore.Store, what string, reclaim time.Duration) {
	t.Helper()
	j, err := st.ClaimWebhook(t.Context(), "c-empty", 20*time.Millisecond, reclaim)
	if !errors.Is(err, sessionstore.ErrEmpty) {
		t.Fatalf("%s: got job %+v, error %v; want ErrEmpty", what, j, err)
	}
}

func wantDelivery(t *testing.T, st sessionstore.Store, hookID, eventID, state string, attempts int) sessionstore.WebhookDelivery {
	t.Helper()
	ds, err := st.WebhookDeliveries(t.Context(), hookID)
	if err != nil {
		t.Fatalf("WebhookDeliveries: %v", err)
	}
	if len(ds) != 1 || ds[0].EventID != eventID || ds[0].State != state || ds[0].Attempts != attempts {
		t.Fatalf("WebhookDeliveries: got %+v, want one record of event %s, state %s, attempts %d", ds, eventID, state, attempts)
	}
	return ds[0]
}

func testWebhooks(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	acct, other := newID(), newID()
	h1 := newHook(t, st, acct, sessionstore.EventAssetReady)
	h2 := newHook(t, st, acct, sessionstore.EventTypes...)
	h3 := newHook(t, st, other, sessionstore.EventAssetReady)
	if err := st.CreateWebhook(ctx, h1); !errors.Is(err, sessionstore.ErrExists) {
		t.Fatalf("CreateWebhook of a taken id: got %v, want ErrExists", err)
	}
	got, err := st.Webhooks(ctx, acct)
	if err != nil || len(got) != 2 || got[0].ID != h1.ID || got[1].ID != h2.ID || got[1].Secret != h2.Secret {
		t.Fatalf("Webhooks(%s): got %+v, %v; want %s then %s", acct, got, err, h1.ID, h2.ID)
	}
	if h, err := st.Webhook(ctx, h3.ID); err != nil || h.Account != other || h.URL != h3.URL {
		t.Fatalf("Webhook(%s): got %+v, %v; want %+v", h3.ID, h, err, h3)
	}
	if err := st.DeleteWebhook(ctx, other, h1.ID); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Fatalf("DeleteWebhook by another account: got %v, want ErrNotFound", err)
	}
	if err := st.DeleteWebhook(ctx, acct, h1.ID); err != nil {
		t.Fatalf("DeleteWebhook: %v", err)
	}
	if _, err := st.Webhook(ctx, h1.ID); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Fatalf("Webhook after delete: got %v, want ErrNotFound", err)
	}
	if err := st.DeleteWebhook(ctx, acct, h1.ID); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Fatalf("DeleteWebhook twice: got %v, want ErrNotFound", err)
	}
	if got, _ := st.Webhooks(ctx, acct); len(got) != 1 || got[0].ID != h2.ID {
		t.Fatalf("Webhooks after delete: got %+v, want only %s", got, h2.ID)
	}
	for _, h := range []sessionstore.Webhook{h2, h3} {
		if err := st.DeleteWebhook(ctx, h.Account, h.ID); err != nil {
			t.Fatalf("DeleteWebhook: %v", err)
		}
	}
}

func testWebhookRetryDeliver(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	acct := newID()
	h := newHook(t, st, acct, sessionstore.EventAssetReady)
	if n, err := st.EnqueueWebhookEvent(ctx, acct, newEvent(sessionstore.EventAssetCreated)); err != nil || n != 0 {
		t.Fatalf("EnqueueWebhookEvent of an unsubscribed type: got %d, %v; want 0", n, err)
	}
	if n, err := st.EnqueueWebhookEvent(ctx, newID(), newEvent(sessionstore.EventAssetReady)); err != nil || n != 0 {
		t.Fatalf("EnqueueWebhookEvent of an account without webhooks: got %d, %v; want 0", n, err)
	}
	ev := newEvent(sessionstore.EventAssetReady)
	if n, err := st.EnqueueWebhookEvent(ctx, acct, ev); err != nil || n != 1 {
		t.Fatalf("EnqueueWebhookEvent: got %d, %v; want 1", n, err)
	}
	wantDelivery(t, st, h.ID, ev.ID, sessionstore.DeliveryPending, 0)

	j := mustClaimHook(t, st, "c1", time.Second, time.Minute)
	if j.HookID != h.ID || j.Event.ID != ev.ID || j.Event.Asset.ID != ev.Asset.ID || j.Attempts != 0 || j.Since.IsZero() {
		t.Fatalf("ClaimWebhook: got %+v, want event %s of hook %s, attempts 0", j, ev.ID, h.ID)
	}
	wantNoHookJob(t, st, "claim while the only job is claimed", time.Minute)

	const delay = 300 * time.Millisecond
	if err := st.SettleWebhook(ctx, j, sessionstore.WebhookOutcome{State: sessionstore.DeliveryRetrying,
		Status: 500, Error: "status 500", RetryIn: delay}); err != nil {
		t.Fatalf("SettleWebhook(retrying): %v", err)
	}
	d := wantDelivery(t, st, h.ID, ev.ID, sessionstore.DeliveryRetrying, 1)
	if d.LastStatus != 500 || d.NextAttempt.IsZero() {
		t.Fatalf("retrying record: got %+v, want status 500 and a next attempt", d)
	}
	start := time.Now()
	j2 := mustClaimHook(t, st, "c2", 3*time.Second, time.Minute)
	if took := time.Since(start); took < delay/2 {
		t.Fatalf("retry claimed after %v, want about %v", took, delay)
	}
	if j2.Event.ID != ev.ID || j2.Attempts != 1 || !j2.Since.Equal(j.Since) {
		t.Fatalf("retried job: got %+v, want event %s, attempts 1, since %v", j2, ev.ID, j.Since)
	}
	// Put off without an attempt (its endpoint busy or failing): its
	// attempts stay, and so does its record's retrying state, with the
	// failure the deliverer gives.
	if err := st.SettleWebhook(ctx, j2, sessionstore.WebhookOutcome{State: sessionstore.DeliveryPending,
		Status: 503, Error: "http_status", RetryIn: 10 * time.Millisecond}); err != nil {
		t.Fatalf("SettleWebhook(pending, put off): %v", err)
	}
	if d := wantDelivery(t, st, h.ID, ev.ID, sessionstore.DeliveryRetrying, 1); d.LastStatus != 503 || d.LastError != "http_status" {
		t.Fatalf("put-off record: got %+v, want status 503, error http_status", d)
	}
	j2 = mustClaimHook(t, st, "c2", 3*time.Second, time.Minute)
	if j2.Event.ID != ev.ID || j2.Attempts != 1 {
		t.Fatalf("put-off job: got %+v, want event %s, attempts 1", j2, ev.ID)
	}
	if err := st.SettleWebhook(ctx, j2, sessionstore.WebhookOutcome{State: sessionstore.DeliveryDelivered, Status: 204}); err != nil {
		t.Fatalf("SettleWebhook(delivered): %v", err)
	}
	wantDelivery(t, st, h.ID, ev.ID, sessionstore.DeliveryDelivered, 2)
	wantNoHookJob(t, st, "claim after delivery", 0)
	// A stale settle (the first claim, long gone) changes nothing.
	if err := st.SettleWebhook(ctx, j, sessionstore.WebhookOutcome{State: sessionstore.DeliveryDead, Error: "late"}); err != nil {
		t.Fatalf("stale SettleWebhook: %v", err)
	}
	wantDelivery(t, st, h.ID, ev.ID, sessionstore.DeliveryDelivered, 2)
	wantNoHookJob(t, st, "claim after a stale settle", 0)
}

func testWebhookReclaim(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	acct := newID()
	h := newHook(t, st, acct, sessionstore.EventAssetDeleted)
	ev := newEvent(sessionstore.EventAssetDeleted)
	if _, err := st.EnqueueWebhookEvent(ctx, acct, ev); err != nil {
		t.Fatal(err)
	}
	const reclaim = 200 * time.Millisecond
	j1 := mustClaimHook(t, st, "c1", time.Second, reclaim)
	// c1 dies: after reclaim, c2 gets the same delivery, never before.
	wantNoHookJob(t, st, "claim before reclaimAfter", reclaim)
	j2 := mustClaimHook(t, st, "c2", 2*time.Second, reclaim)
	if j2.Event.ID != j1.Event.ID || j2.HookID != h.ID {
		t.Fatalf("reclaimed job: got %+v, want event %s", j2, j1.Event.ID)
	}
	if err := st.SettleWebhook(ctx, j2, sessionstore.WebhookOutcome{State: sessionstore.DeliveryDelivered, Status: 200}); err != nil {
		t.Fatal(err)
	}
	wantDelivery(t, st, h.ID, ev.ID, sessionstore.DeliveryDelivered, 1)
	wantNoHookJob(t, st, "claim after the reclaimed job was settled", 0)
}

func testWebhookDead(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	acct := newID()
	h := newHook(t, st, acct, sessionstore.EventUploadExpired)
	gone := newHook(t, st, acct, sessionstore.EventUploadExpired)
	ev := newEvent(sessionstore.EventUploadExpired)
	if n, err := st.EnqueueWebhookEvent(ctx, acct, ev); err != nil || n != 2 {
		t.Fatalf("EnqueueWebhookEvent: got %d, %v; want 2", n, err)
	}
	if err := st.DeleteWebhook(ctx, acct, gone.ID); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		j := mustClaimHook(t, st, "c1", time.Second, time.Minute)
		if err := st.SettleWebhook(ctx, j, sessionstore.WebhookOutcome{State: sessionstore.DeliveryDead, Error: "gave up"}); err != nil {
			t.Fatalf("SettleWebhook(dead): %v", err)
		}
	}
	d := wantDelivery(t, st, h.ID, ev.ID, sessionstore.DeliveryDead, 1)
	if d.LastError != "gave up" || d.EventType != sessionstore.EventUploadExpired {
		t.Fatalf("dead record: got %+v, want error %q, type %s", d, "gave up", sessionstore.EventUploadExpired)
	}
	// A deleted webhook keeps no records, even of jobs settled after.
	if ds, err := st.WebhookDeliveries(ctx, gone.ID); err != nil || len(ds) != 0 {
		t.Fatalf("WebhookDeliveries of a deleted webhook: got %+v, %v; want none", ds, err)
	}
	wantNoHookJob(t, st, "claim after dead letters", 0)
}

// testWebhookVerify: an event queued before its change (Verify) shows no
// delivery until verified; a pending settle requeues it as given with its
// attempts unchanged (still to verify, or verified with the asset as it
// stands after the change); a dropped one leaves neither job nor record.
func testWebhookVerify(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	acct := newID()
	h := newHook(t, st, acct, sessionstore.EventAssetReady)
	ev := newEvent(sessionstore.EventAssetReady)
	ev.Verify = true
	if n, err := st.EnqueueWebhookEvent(ctx, acct, ev); err != nil || n != 1 {
		t.Fatalf("EnqueueWebhookEvent: got %d, %v; want 1", n, err)
	}
	wantNoDelivery := func(what string) {
		t.Helper()
		if ds, err := st.WebhookDeliveries(ctx, h.ID); err != nil || len(ds) != 0 {
			t.Fatalf("%s: WebhookDeliveries: got %+v, %v; want none", what, ds, err)
		}
	}
	wantNoDelivery("queued to verify")
	j := mustClaimHook(t, st, "c1", time.Second, time.Minute)
	if !j.Event.Verify || j.Attempts != 0 {
		t.Fatalf("ClaimWebhook: got %+v, want the event to verify, attempts 0", j)
	}
	// Not happened yet: checked again later, still no delivery.
	if err := st.SettleWebhook(ctx, j, sessionstore.WebhookOutcome{State: sessionstore.DeliveryPending, RetryIn: 50 * time.Millisecond}); err != nil {
		t.Fatalf("SettleWebhook(pending, unverified): %v", err)
	}
	wantNoDelivery("not verified yet")
	j = mustClaimHook(t, st, "c1", 2*time.Second, time.Minute)
	if j.Event.ID != ev.ID || !j.Event.Verify || j.Attempts != 0 {
		t.Fatalf("ClaimWebhook after an unverified check: got %+v, want event %s to verify, attempts 0", j, ev.ID)
	}
	// Verified: requeued with the asset after the change.
	j.Event.Verify, j.Event.Asset.State = false, sessionstore.StateReady
	if err := st.SettleWebhook(ctx, j, sessionstore.WebhookOutcome{State: sessionstore.DeliveryPending}); err != nil {
		t.Fatalf("SettleWebhook(pending, verified): %v", err)
	}
	wantDelivery(t, st, h.ID, ev.ID, sessionstore.DeliveryPending, 0)
	j = mustClaimHook(t, st, "c1", 2*time.Second, time.Minute)
	if j.Event.ID != ev.ID || j.Event.Verify || j.Event.Asset.State != sessionstore.StateReady || j.Attempts != 0 {
		t.Fatalf("ClaimWebhook after verification: got %+v, want event %s verified, asset ready, attempts 0", j, ev.ID)
	}
	if err := st.SettleWebhook(ctx, j, sessionstore.WebhookOutcome{State: sessionstore.DeliveryDelivered, Status: 200}); err != nil {
		t.Fatal(err)
	}
	wantDelivery(t, st, h.ID, ev.ID, sessionstore.DeliveryDelivered, 1)

	never := newEvent(sessionstore.EventAssetReady)
	never.Verify = true
	if _, err := st.EnqueueWebhookEvent(ctx, acct, never); err != nil {
		t.Fatal(err)
	}
	j = mustClaimHook(t, st, "c1", time.Second, time.Minute)
	if err := st.SettleWebhook(ctx, j, sessionstore.WebhookOutcome{State: sessionstore.DeliveryDropped}); err != nil {
		t.Fatalf("SettleWebhook(dropped): %v", err)
	}
	wantDelivery(t, st, h.ID, ev.ID, sessionstore.DeliveryDelivered, 1)
	wantNoHookJob(t, st, "claim after a drop", 0)
}

// testAssetRecord: a deleted asset is gone for Asset but its record stays,
// marked Deleted (a queued event's change is verified on it).
func testAssetRecord(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	sess, a := fixture()
	if _, err := st.AssetRecord(ctx, a.ID); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Fatalf("AssetRecord before creation: got %v, want ErrNotFound", err)
	}
	if err := st.CreateUpload(ctx, sess, a); err != nil {
		t.Fatal(err)
	}
	if got, err := st.AssetRecord(ctx, a.ID); err != nil || got.ID != a.ID || got.Deleted {
		t.Fatalf("AssetRecord: got %+v, %v; want asset %s, not deleted", got, err, a.ID)
	}
	if _, err := st.DeleteUpload(ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Asset(ctx, a.ID); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Fatalf("Asset after delete: got %v, want ErrNotFound", err)
	}
	if got, err := st.AssetRecord(ctx, a.ID); err != nil || got.ID != a.ID || !got.Deleted || got.State != a.State {
		t.Fatalf("AssetRecord after delete: got %+v, %v; want asset %s, deleted, state %s", got, err, a.ID, a.State)
	}
}

// testWebhookDeliveriesByTime: event ids are derived from the change, not
// from time, so deliveries are listed newest first by when they were
// queued, whatever their ids; and one event queued twice (one change told
// twice) is one delivery record.
func testWebhookDeliveriesByTime(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	acct := newID()
	h := newHook(t, st, acct, sessionstore.EventAssetReady)
	older, newer := newEvent(sessionstore.EventAssetReady), newEvent(sessionstore.EventAssetReady)
	older.ID, newer.ID = "ffffffff-0000-8000-8000-000000000000", "00000000-0000-8000-8000-000000000000"
	for _, ev := range []sessionstore.WebhookEvent{older, newer, newer} {
		if n, err := st.EnqueueWebhookEvent(ctx, acct, ev); err != nil || n != 1 {
			t.Fatalf("EnqueueWebhookEvent(%s): got %d, %v; want 1", ev.ID, n, err)
		}
		time.Sleep(5 * time.Millisecond) // distinct enqueue times
	}
	ds, err := st.WebhookDeliveries(ctx, h.ID)
	if err != nil || len(ds) != 2 || ds[0].EventID != newer.ID || ds[1].EventID != older.ID {
		t.Fatalf("WebhookDeliveries: got %+v, %v; want the records of %s then %s (newest first)", ds, err, newer.ID, older.ID)
	}
	for range 3 {
		j := mustClaimHook(t, st, "c1", time.Second, time.Minute)
		if err := st.SettleWebhook(ctx, j, sessionstore.WebhookOutcome{State: sessionstore.DeliveryDelivered, Status: 204}); err != nil {
			t.Fatalf("SettleWebhook: %v", err)
		}
	}
	wantNoHookJob(t, st, "claim after three deliveries", 0)
}
