package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/webhook"

	"github.com/roughy/ingest/sessionstore/bolt"
)

// crashStore is the real Local store with a switch that makes the node
// "die" right after a state change: once a creation, a completing commit
// or a deletion succeeded, nothing more reaches the store through it.
// Another node (a deliverer on the Local store itself) then carries on.
type crashStore struct {
	*bolt.Store
	dead atomic.Bool
	// refuseCreate makes CreateUpload fail (a creation refused after its
	// event was queued).
	refuseCreate atomic.Bool
	// failDelete makes the next DeleteUpload(Leased) fail (a deletion that fails
	// after its event was queued).
	failDelete atomic.Bool
}

var errCrashed = errors.New("crashStore: node died")

func (c *crashStore) EnqueueWebhookEvent(ctx context.Context, account string, ev sessionstore.WebhookEvent) (int, error) {
	if c.dead.Load() {
		return 0, errCrashed
	}
	return c.Store.EnqueueWebhookEvent(ctx, account, ev)
}

func (c *crashStore) CreateUpload(ctx context.Context, s sessionstore.Session, a sessionstore.Asset) error {
	if c.refuseCreate.Load() {
		return errors.New("crashStore: creation refused")
	}
	err := c.Store.CreateUpload(ctx, s, a)
	c.dead.Store(err == nil)
	return err
}

// CreateReserved is CreateUpload's switch for the one-write creation;
// a refused one has its event queued first, as on a store that queues it
// with a write of its own.
func (c *crashStore) CreateReserved(ctx context.Context, cr sessionstore.Creation) error {
	if c.refuseCreate.Load() {
		if cr.Event != nil {
			_, _ = c.Store.EnqueueWebhookEvent(ctx, cr.Session.Account, *cr.Event)
		}
		return errors.New("crashStore: creation refused")
	}
	err := c.Store.CreateReserved(ctx, cr)
	c.dead.Store(err == nil)
	return err
}

func (c *crashStore) Commit(ctx context.Context, l sessionstore.Lease, cm sessionstore.Commit) (sessionstore.Session, error) {
	s, err := c.Store.Commit(ctx, l, cm)
	c.dead.Store(err == nil && cm.Complete)
	return s, err
}

func (c *crashStore) DeleteUpload(ctx context.Context, id string) (sessionstore.Session, error) {
	if c.failDelete.CompareAndSwap(true, false) {
		return sessionstore.Session{}, errors.New("crashStore: delete failed")
	}
	s, err := c.Store.DeleteUpload(ctx, id)
	c.dead.Store(err == nil)
	return s, err
}

func (c *crashStore) DeleteUploadLeased(ctx context.Context, l sessionstore.Lease) (sessionstore.Session, error) {
	if c.failDelete.CompareAndSwap(true, false) {
		return sessionstore.Session{}, errors.New("crashStore: delete failed")
	}
	s, err := c.Store.DeleteUploadLeased(ctx, l)
	c.dead.Store(err == nil)
	return s, err
}

// receiver collects the payloads a deliverer posts.
type receiver struct {
	mu  sync.Mutex
	got []webhook.Payload
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var p webhook.Payload
	if err := json.Unmarshal(body, &p); err == nil {
		r.mu.Lock()
		r.got = append(r.got, p)
		r.mu.Unlock()
	}
	w.WriteHeader(http.StatusNoContent)
}

// wait returns the payloads once one of type typ about asset arrived.
func (r *receiver) wait(t *testing.T, typ, asset string) webhook.Payload {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for _, p := range r.got {
			if a, _ := p.Asset.(map[string]any); p.Type == typ && a["id"] == asset {
				r.mu.Unlock()
				return p
			}
		}
		r.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %s event about asset %s within 10s; got %+v", typ, asset, r.got)
	return webhook.Payload{}
}

// startDelivery subscribes account to every event and runs a deliverer on
// the Local store (the surviving node) with a short verification cutoff.
func startDelivery(t *testing.T, e *env, account string) *receiver {
	t.Helper()
	recv := subscribe(t, e, account)
	runDeliverer(t, e)
	return recv
}

// subscribe subscribes account to every event, delivered to the receiver.
func subscribe(t *testing.T, e *env, account string) *receiver {
	t.Helper()
	recv := &receiver{}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	h := sessionstore.Webhook{ID: "hook-" + account, Account: account, URL: srv.URL, Events: sessionstore.EventTypes,
		Secret: "whsec_test", CreatedAt: time.Now()}
	if err := e.local.CreateWebhook(t.Context(), h); err != nil {
		t.Fatalf("CreateWebhook: %v", err)
	}
	return recv
}

// runDeliverer runs a deliverer on the Local store until the test ends.
func runDeliverer(t *testing.T, e *env) {
	// The receivers are httptest servers on loopback.
	loopback := webhook.Targets{Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	d := webhook.New(webhook.Config{Workers: 2, Block: 100 * time.Millisecond, Render: e.srv.WebhookAsset, Targets: loopback,
		Verify: e.srv.WebhookVerify, VerifyFor: time.Second, VerifyDelay: 50 * time.Millisecond}, e.local)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestWebhookEventsSurviveCrashAfterChange: the node "dies" (its store
// calls fail) right after each state change — creation, the completing
// commit, deletion — and every event is still delivered, with the
// asset as it stands after the change: the events were queued before.
func TestWebhookEventsSurviveCrashAfterChange(t *testing.T) {
	cs := &crashStore{}
	e := newEnv(t, nil, func(l sessionstore.Store) sessionstore.Store { cs.Store = l.(*bolt.Store); return cs })
	recv := startDelivery(t, e, "acme")

	c := e.create("acme", 5)
	p := recv.wait(t, sessionstore.EventAssetCreated, c.Asset.ID)
	if a := p.Asset.(map[string]any); a["state"] != sessionstore.StateUploading {
		t.Fatalf("asset.created asset: got %v, want state uploading", a)
	}
	cs.dead.Store(false)
	if r := e.patch("acme", c.Location, 0, []byte("hello")); r.status != http.StatusNoContent {
		t.Fatalf("PATCH: status %d %s, want 204", r.status, r.body)
	}
	p = recv.wait(t, sessionstore.EventAssetReady, c.Asset.ID)
	if a := p.Asset.(map[string]any); a["state"] != sessionstore.StateReady || a["sha256"] == "" {
		t.Fatalf("asset.ready asset: got %v, want state ready with its sha256 (rendered after the commit)", a)
	}
	e.wantReady("acme", c.Asset.ID, []byte("hello"))
	cs.dead.Store(false)
	if r := e.do("DELETE", c.Location, e.tusHdr("acme"), nil); r.status != http.StatusNoContent {
		t.Fatalf("DELETE: status %d %s, want 204", r.status, r.body)
	}
	p = recv.wait(t, sessionstore.EventAssetDeleted, c.Asset.ID)
	if a := p.Asset.(map[string]any); a["state"] != sessionstore.StateReady {
		t.Fatalf("asset.deleted asset: got %v, want the snapshot before the delete (state ready)", a)
	}
}

// TestWebhookExpiryEventSurvivesCrash: likewise for the janitor's expiry.
func TestWebhookExpiryEventSurvivesCrash(t *testing.T) {
	cs := &crashStore{}
	e := newEnv(t, func(c *Config) { c.UploadExpiry = 300 * time.Millisecond },
		func(l sessionstore.Store) sessionstore.Store { cs.Store = l.(*bolt.Store); return cs })
	recv := startDelivery(t, e, "acme")
	c := e.create("acme", 5)
	recv.wait(t, sessionstore.EventAssetCreated, c.Asset.ID)
	cs.dead.Store(false)
	sess, err := e.local.Session(t.Context(), c.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(sess.ExpiresAt) + 50*time.Millisecond)
	if err := e.srv.svc.Expire(t.Context(), sess); err != nil {
		t.Fatalf("expire: %v", err)
	}
	if _, err := e.local.Session(t.Context(), c.SessionID); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Fatalf("session after expiry: got %v, want ErrNotFound", err)
	}
	recv.wait(t, sessionstore.EventUploadExpired, c.Asset.ID)
}

// TestWebhookRefusedChangeNeverDelivered: a creation refused after its
// event was queued gets no asset.created, ever: past the verification
// cutoff the event is dropped without a delivery record.
func TestWebhookRefusedChangeNeverDelivered(t *testing.T) {
	cs := &crashStore{}
	e := newEnv(t, nil, func(l sessionstore.Store) sessionstore.Store { cs.Store = l.(*bolt.Store); return cs })
	recv := startDelivery(t, e, "acme")

	cs.refuseCreate.Store(true)
	h := e.tusHdr("acme", "Upload-Length", "5", "Upload-Metadata", md("type", "video", "filename", "x.mp4"))
	if r := e.do("POST", uploadsPath, h, nil); r.status != http.StatusInternalServerError {
		t.Fatalf("refused POST: status %d %s, want 500", r.status, r.body)
	}
	cs.refuseCreate.Store(false)
	ok := e.create("acme", 5)
	recv.wait(t, sessionstore.EventAssetCreated, ok.Asset.ID)
	time.Sleep(1500 * time.Millisecond) // past VerifyFor (1s)

	recv.mu.Lock()
	got := append([]webhook.Payload(nil), recv.got...)
	recv.mu.Unlock()
	if len(got) != 1 {
		t.Fatalf("deliveries: got %+v, want only the asset.created of %s", got, ok.Asset.ID)
	}
	ds, err := e.local.WebhookDeliveries(t.Context(), "hook-acme")
	if err != nil || len(ds) != 1 || ds[0].State != sessionstore.DeliveryDelivered {
		t.Fatalf("delivery records: got %+v, %v; want one, delivered", ds, err)
	}
	if j, err := e.local.ClaimWebhook(t.Context(), "probe", 50*time.Millisecond, time.Minute); !errors.Is(err, sessionstore.ErrEmpty) {
		t.Fatalf("queue after the cutoff: got job %+v, %v; want empty (the refused creation's event dropped)", j, err)
	}
}

// TestWebhookChangeVerifiedAfterDelete: events of an upload completed and
// deleted before any was verified (a delivery backlog) are all delivered:
// the change is verified on the asset's record, deleted or not, and a
// deleted asset's payload has no download URL.
func TestWebhookChangeVerifiedAfterDelete(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.PublicURL = "http://roughy.test" }, nil)
	recv := subscribe(t, e, "acme")
	c := e.create("acme", 5)
	c.Location = strings.TrimPrefix(c.Location, "http://roughy.test")
	if r := e.patch("acme", c.Location, 0, []byte("hello")); r.status != http.StatusNoContent {
		t.Fatalf("PATCH: status %d %s, want 204", r.status, r.body)
	}
	if _, a := e.getAsset("acme", c.Asset.ID); a.DownloadURL == "" {
		t.Fatalf("asset before the delete: got %+v, want a download_url (the check below is not vacuous)", a)
	}
	e.wantReady("acme", c.Asset.ID, []byte("hello"))
	if r := e.do("DELETE", c.Location, e.tusHdr("acme"), nil); r.status != http.StatusNoContent {
		t.Fatalf("DELETE: status %d %s, want 204", r.status, r.body)
	}
	runDeliverer(t, e)
	recv.wait(t, sessionstore.EventAssetCreated, c.Asset.ID)
	p := recv.wait(t, sessionstore.EventAssetReady, c.Asset.ID)
	if a := p.Asset.(map[string]any); a["state"] != sessionstore.StateReady || a["download_url"] != nil {
		t.Fatalf("asset.ready of a deleted asset: got %v, want state ready and no download_url", a)
	}
	recv.wait(t, sessionstore.EventAssetDeleted, c.Asset.ID)
}

// TestWebhookRepeatedChangeOneID: a DELETE that fails after queueing its
// asset.deleted event, then is repeated and succeeds, tells the deletion
// twice (both events see the asset gone) under one event id, so that a
// receiver deduplicating by id handles it once.
func TestWebhookRepeatedChangeOneID(t *testing.T) {
	cs := &crashStore{}
	e := newEnv(t, nil, func(l sessionstore.Store) sessionstore.Store { cs.Store = l.(*bolt.Store); return cs })
	recv := startDelivery(t, e, "acme")
	c := e.create("acme", 5)
	cs.dead.Store(false) // this test's node lives on
	cs.failDelete.Store(true)
	if r := e.do("DELETE", c.Location, e.tusHdr("acme"), nil); r.status/100 != 5 {
		t.Fatalf("DELETE while the store fails: status %d %s, want 5xx", r.status, r.body)
	}
	if r := e.do("DELETE", c.Location, e.tusHdr("acme"), nil); r.status != http.StatusNoContent {
		t.Fatalf("repeated DELETE: status %d %s, want 204", r.status, r.body)
	}
	recv.wait(t, sessionstore.EventAssetDeleted, c.Asset.ID)
	time.Sleep(1500 * time.Millisecond) // past VerifyFor (1s): both events settled

	recv.mu.Lock()
	defer recv.mu.Unlock()
	var ids []string
	for _, p := range recv.got {
		if a, _ := p.Asset.(map[string]any); p.Type == sessionstore.EventAssetDeleted && a["id"] == c.Asset.ID {
			ids = append(ids, p.ID)
		}
	}
	if len(ids) != 2 || ids[0] != ids[1] {
		t.Fatalf("asset.deleted deliveries: ids %v, want two deliveries (the deletion told twice) under one id", ids)
	}
}
