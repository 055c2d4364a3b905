package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// fastWebhooks shrinks the retry schedule (30s doubling to 1h, for 24h)
// to one that runs in seconds, and lets in the tests' receivers, on
// loopback.
var fastWebhooks = []string{"--webhook-retry-base", "200ms", "--webhook-retry-max", "1s", "--webhook-timeout", "5s",
	"--webhook-allowed-networks", loopbackReceivers}

// loopbackReceivers is the allow-list of the tests' receivers.
const loopbackReceivers = "127.0.0.0/8"

// webhookJSON is a webhook as the API shows it.
type webhookJSON struct {
	ID        string   `json:"id"`
	URL       string   `json:"url"`
	Events    []string `json:"events"`
	Secret    string   `json:"secret"`
	CreatedAt string   `json:"created_at"`
}

// deliveryJSON is one record of GET /api/v1/webhooks/{id}/deliveries.
type deliveryJSON struct {
	EventID    string  `json:"event_id"`
	EventType  string  `json:"event_type"`
	State      string  `json:"state"`
	Attempts   int     `json:"attempts"`
	LastStatus *int    `json:"last_status"`
	LastError  *string `json:"last_error"`
}

// createWebhook registers url for events (none: all) and returns the
// webhook, its secret included; the receiver gets the secret.
func createWebhook(t *testing.T, s *server, key string, wr *testsvc.WebhookReceiver, url string, events ...string) webhookJSON {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"url": url, "events": events})
	rep := do(t, req{Method: "POST", URL: s.URL + "/api/v1/webhooks", Key: key, NoTus: true, Body: bytes.NewReader(body),
		Header: map[string]string{"Content-Type": "application/json"}})
	if rep.Status != http.StatusCreated {
		t.Fatalf("POST /api/v1/webhooks: got %d %s, want 201", rep.Status, rep.Body)
	}
	var h webhookJSON
	if err := json.Unmarshal(rep.Body, &h); err != nil || h.ID == "" || !strings.HasPrefix(h.Secret, "whsec_") {
		t.Fatalf("POST /api/v1/webhooks body %s (%v): want an id and a whsec_ secret", rep.Body, err)
	}
	if wr != nil {
		wr.SetSecret(h.Secret)
	}
	return h
}

// webhookDeliveries GETs a webhook's delivery records.
func webhookDeliveries(t *testing.T, s *server, key, id string) []deliveryJSON {
	t.Helper()
	rep := do(t, req{Method: "GET", URL: s.URL + "/api/v1/webhooks/" + id + "/deliveries", Key: key, NoTus: true})
	if rep.Status != http.StatusOK {
		t.Fatalf("GET deliveries: got %d %s, want 200", rep.Status, rep.Body)
	}
	var body struct {
		Deliveries []deliveryJSON `json:"deliveries"`
	}
	if err := json.Unmarshal(rep.Body, &body); err != nil {
		t.Fatalf("deliveries body %s: %v", rep.Body, err)
	}
	return body.Deliveries
}

// waitDeliveries polls a webhook's records until ok holds.
func waitDeliveries(t *testing.T, s *server, key, id string, timeout time.Duration, what string, ok func([]deliveryJSON) bool) []deliveryJSON {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ds := webhookDeliveries(t, s, key, id)
		if ok(ds) {
			return ds
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries of %s: %s not within %v; got %+v", id, what, timeout, ds)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// uploadAll creates an upload with metadata meta and sends data in one
// PATCH, which completes it; the finished asset must serve data.
func uploadAll(t *testing.T, s *server, key, meta string, data []byte) created {
	t.Helper()
	rep := do(t, req{Method: "POST", URL: s.Endpoint(), Key: key, Header: map[string]string{
		"Upload-Length": fmt.Sprint(len(data)), "Upload-Metadata": meta}})
	if rep.Status != http.StatusCreated {
		t.Fatalf("POST: got %d %s, want 201", rep.Status, rep.Body)
	}
	var body struct {
		Asset struct {
			ID string `json:"id"`
		} `json:"asset"`
	}
	if err := json.Unmarshal(rep.Body, &body); err != nil {
		t.Fatalf("POST: %d %s: %v", rep.Status, rep.Body, err)
	}
	c := created{Location: rep.Header.Get("Location"), AssetID: body.Asset.ID}
	if rep := patch(t, c.Location, key, 0, data); rep.Status != http.StatusNoContent {
		t.Fatalf("PATCH: got %d %s, want 204", rep.Status, rep.Body)
	}
	wantReady(t, s, key, c.AssetID, data)
	return c
}

// makeWAV renders one second of a sine tone: a small file ffprobe knows.
func makeWAV(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "tone.wav")
	runCmd(t, time.Minute, nil, "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-ac", "1", out)
	return readFile(t, out)
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWebhooksEveryEvent: every event type reaches a receiver that checks
// each signature, with the asset as GET /api/v1/assets/{id} shows it.
func TestWebhooksEveryEvent(t *testing.T) {
	s := startServer(t, withArgs(append(fastWebhooks, "--upload-expiry", "2s", "--janitor-interval", "300ms")...))
	wr := testsvc.StartWebhookReceiver(t)
	h := createWebhook(t, s, acmeKey, wr, wr.URL)
	if !slices.Equal(h.Events, []string{"asset.created", "asset.deleted", "asset.probed", "asset.ready", "upload.expired"}) {
		t.Fatalf("webhook events: got %v, want every event type", h.Events)
	}

	wav := makeWAV(t)
	media := uploadAll(t, s, acmeKey, "type "+b64("audio")+",content_type "+b64("audio/wav"), wav)
	junk := uploadAll(t, s, acmeKey, videoMeta("junk.bin"), randomBytes(4096))
	deleted := createUpload(t, s, acmeKey, 100)
	if rep := do(t, req{Method: "DELETE", URL: deleted.Location, Key: acmeKey}); rep.Status != http.StatusNoContent {
		t.Fatalf("DELETE: got %d, want 204", rep.Status)
	}
	abandoned := createUpload(t, s, acmeKey, 100)
	// Another account's uploads are not this webhook's business.
	other := createUpload(t, s, globexKey, 100)

	want := []struct{ typ, asset string }{
		{"asset.created", media.AssetID}, {"asset.ready", media.AssetID}, {"asset.probed", media.AssetID},
		{"asset.created", junk.AssetID}, {"asset.ready", junk.AssetID}, {"asset.probed", junk.AssetID},
		{"asset.created", deleted.AssetID}, {"asset.deleted", deleted.AssetID},
		{"asset.created", abandoned.AssetID}, {"upload.expired", abandoned.AssetID},
	}
	got := wr.WaitFor(t, 30*time.Second, "every event", func(ds []testsvc.WebhookDelivery) bool {
		for _, w := range want {
			if len(testsvc.OfType(ds, w.typ, w.asset)) == 0 {
				return false
			}
		}
		return true
	})
	if bad := wr.BadSignatures(); len(bad) > 0 {
		t.Fatalf("deliveries with bad signatures: %v", bad)
	}
	ids := map[string]bool{}
	for _, d := range got {
		if d.Asset["id"] == other.AssetID {
			t.Fatalf("globex's asset reached acme's webhook: %+v", d)
		}
		if d.Header.Get("Roughy-Event-Id") != d.ID || d.Header.Get("Roughy-Event-Type") != d.Type || d.Time == "" {
			t.Fatalf("delivery headers: got id %q type %q, body id %q type %q time %q",
				d.Header.Get("Roughy-Event-Id"), d.Header.Get("Roughy-Event-Type"), d.ID, d.Type, d.Time)
		}
		if d.Attempt == 1 && ids[d.ID] {
			t.Fatalf("event id %s used by two events", d.ID)
		}
		ids[d.ID] = true
	}
	if len(ids) != len(want) {
		t.Fatalf("distinct events: got %d (%s), want %d", len(ids), testsvc.Summary(got), len(want))
	}

	created := testsvc.OfType(got, "asset.created", media.AssetID)[0]
	// The asset is rendered when the event is delivered (README: a queued
	// event is checked, then sent with the asset as it stands), so a
	// created event delivered after the last PATCH shows it ready.
	if st := created.Asset["state"]; (st != "uploading" && st != "ready") || created.Asset["type"] != "audio" {
		t.Fatalf("asset.created asset: got %v, want state uploading or ready, type audio", created.Asset)
	}
	ready := testsvc.OfType(got, "asset.ready", media.AssetID)[0]
	if ready.Asset["state"] != "ready" || ready.Asset["sha256"] != sha256Hex(wav) || ready.Asset["size_bytes"] != float64(len(wav)) {
		t.Fatalf("asset.ready asset: got %v, want state ready, sha256 %s, size %d", ready.Asset, sha256Hex(wav), len(wav))
	}
	probed := testsvc.OfType(got, "asset.probed", media.AssetID)[0]
	if d, _ := probed.Asset["duration_seconds"].(string); !strings.HasPrefix(d, "1.0") || probed.Error != "" {
		t.Fatalf("asset.probed of a 1 s tone: got duration %v, error %q; want about 1.0 and no error", probed.Asset["duration_seconds"], probed.Error)
	}
	failed := testsvc.OfType(got, "asset.probed", junk.AssetID)[0]
	if failed.Error == "" || failed.Asset["duration_seconds"] != nil {
		t.Fatalf("asset.probed of random bytes: got error %q, duration %v; want the probe's failure and no duration", failed.Error, failed.Asset["duration_seconds"])
	}
	if d := testsvc.OfType(got, "asset.deleted", deleted.AssetID)[0]; d.Asset["id"] != deleted.AssetID || d.Asset["download_url"] != nil {
		t.Fatalf("asset.deleted asset: got %v, want the asset without download_url", d.Asset)
	}

	ds := waitDeliveries(t, s, acmeKey, h.ID, 10*time.Second, "every record delivered", func(ds []deliveryJSON) bool {
		for _, d := range ds {
			if d.State != "delivered" {
				return false
			}
		}
		return len(ds) == len(want)
	})
	for _, d := range ds {
		if d.Attempts != 1 || d.LastStatus == nil || *d.LastStatus != http.StatusNoContent {
			t.Fatalf("delivery record: got %+v, want delivered at the first attempt with 204", d)
		}
	}
	// The secret is shown once: never in a listing.
	rep := do(t, req{Method: "GET", URL: s.URL + "/api/v1/webhooks", Key: acmeKey, NoTus: true})
	if rep.Status != http.StatusOK || !strings.Contains(string(rep.Body), h.ID) || strings.Contains(string(rep.Body), h.Secret) {
		t.Fatalf("GET /api/v1/webhooks: got %d %s; want the webhook without its secret", rep.Status, rep.Body)
	}
}

// TestWebhookRetriedAfter500s: a receiver answering 500 three times gets
// the same event again, with growing delays, until it takes it.
func TestWebhookRetriedAfter500s(t *testing.T) {
	s := startServer(t, withArgs(fastWebhooks...))
	wr := testsvc.StartWebhookReceiver(t)
	wr.Respond = func(d testsvc.WebhookDelivery, _ *http.Request) int {
		if d.Attempt <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}
	h := createWebhook(t, s, acmeKey, wr, wr.URL, "asset.created")
	c := createUpload(t, s, acmeKey, 100)
	wr.WaitFor(t, 20*time.Second, "4 attempts", func(ds []testsvc.WebhookDelivery) bool { return len(ds) >= 4 })
	time.Sleep(1500 * time.Millisecond) // nothing after the success
	got := wr.Deliveries()
	if len(got) != 4 {
		t.Fatalf("deliveries: got %d (%s), want 4: three 500s and the success", len(got), testsvc.Summary(got))
	}
	for i, d := range got {
		if d.ID != got[0].ID || d.Type != "asset.created" || d.Asset["id"] != c.AssetID || d.Attempt != i+1 {
			t.Fatalf("attempt %d: got event %s %s of %v (attempt %d), want event %s asset.created of %s", i+1, d.ID, d.Type, d.Asset["id"], d.Attempt, got[0].ID, c.AssetID)
		}
	}
	g1, g3 := got[1].At.Sub(got[0].At), got[3].At.Sub(got[2].At)
	if g1 < 150*time.Millisecond || g3 < g1*3/2 {
		t.Fatalf("retry gaps: first %v, third %v; want at least 200ms, then growing (backoff 200ms, 400ms, 800ms)", g1, g3)
	}
	ds := waitDeliveries(t, s, acmeKey, h.ID, 5*time.Second, "delivered", func(ds []deliveryJSON) bool {
		return len(ds) == 1 && ds[0].State == "delivered"
	})
	if d := ds[0]; d.EventID != got[0].ID || d.Attempts != 4 || d.LastStatus == nil || *d.LastStatus != http.StatusOK {
		t.Fatalf("delivery record: got %+v, want event %s delivered at attempt 4 with 200", d, got[0].ID)
	}
	if bad := wr.BadSignatures(); len(bad) > 0 {
		t.Fatalf("deliveries with bad signatures: %v", bad)
	}
}

// TestWebhookDeadLetter: a receiver that is down for good ends in the
// dead letters once --webhook-retry-for has passed, and is tried no more.
func TestWebhookDeadLetter(t *testing.T) {
	s := startServer(t, withArgs(append(fastWebhooks, "--webhook-retry-for", "2s")...))
	down := fmt.Sprintf("http://127.0.0.1:%d/nobody-home", testsvc.FreePort(t))
	h := createWebhook(t, s, acmeKey, nil, down, "asset.created")
	createUpload(t, s, acmeKey, 100)
	ds := waitDeliveries(t, s, acmeKey, h.ID, 15*time.Second, "dead", func(ds []deliveryJSON) bool {
		return len(ds) == 1 && ds[0].State == "dead"
	})
	d := ds[0]
	if d.Attempts < 3 || d.LastError == nil || *d.LastError != "connection_refused" || d.EventType != "asset.created" {
		t.Fatalf("dead record: got %+v (last_error %v), want several attempts and last_error connection_refused", d, nullStr(d.LastError))
	}
	time.Sleep(1500 * time.Millisecond)
	if again := webhookDeliveries(t, s, acmeKey, h.ID); len(again) != 1 || again[0].Attempts != d.Attempts || again[0].State != "dead" {
		t.Fatalf("after dead-lettering: got %+v, want it unchanged at %d attempts", again, d.Attempts)
	}
}

// TestWebhookKillMidDelivery: the node is killed -9 while a receiver holds
// the delivery open; after a restart the event is delivered, same id. A
// receiver that hangs meanwhile slows no upload.
func TestWebhookKillMidDelivery(t *testing.T) {
	s := startServer(t, withArgs("--webhook-timeout", "60s", "--webhook-workers", "1", "--webhook-allowed-networks", loopbackReceivers))
	wr := testsvc.StartWebhookReceiver(t)
	holding := wr.HoldFirst()
	h := createWebhook(t, s, acmeKey, wr, wr.URL, "asset.ready")
	first := uploadAll(t, s, acmeKey, videoMeta("a.bin"), randomBytes(1000))
	select {
	case <-holding:
	case <-time.After(15 * time.Second):
		t.Fatal("the receiver got no delivery within 15 s")
	}
	// The only delivery worker is stuck; uploads are not.
	start := time.Now()
	second := uploadAll(t, s, acmeKey, videoMeta("b.bin"), randomBytes(1000))
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("an upload while a receiver hangs took %v, want well under 2 s", took)
	}

	s.Kill()
	s.Restart()
	got := wr.WaitFor(t, 20*time.Second, "both events after the restart", func(ds []testsvc.WebhookDelivery) bool {
		return len(testsvc.OfType(ds, "asset.ready", first.AssetID)) >= 2 && len(testsvc.OfType(ds, "asset.ready", second.AssetID)) >= 1
	})
	again := testsvc.OfType(got, "asset.ready", first.AssetID)
	if again[0].ID != again[1].ID {
		t.Fatalf("redelivery after the kill: event ids %s then %s, want the same", again[0].ID, again[1].ID)
	}
	waitDeliveries(t, s, acmeKey, h.ID, 10*time.Second, "both delivered", func(ds []deliveryJSON) bool {
		return len(ds) == 2 && ds[0].State == "delivered" && ds[1].State == "delivered"
	})
}

// TestWebhookAccountIsolation: another account can neither see nor delete
// an account's webhooks or their deliveries; bad input is refused.
func TestWebhookAccountIsolation(t *testing.T) {
	s := startServer(t)
	h := createWebhook(t, s, acmeKey, nil, "https://example.com/hook", "asset.ready")
	base := s.URL + "/api/v1/webhooks"
	for _, c := range []struct {
		method, url, key string
		want             int
	}{
		{"GET", base + "/" + h.ID, globexKey, http.StatusNotFound},
		{"DELETE", base + "/" + h.ID, globexKey, http.StatusNotFound},
		{"GET", base + "/" + h.ID + "/deliveries", globexKey, http.StatusNotFound},
		{"GET", base, "", http.StatusUnauthorized},
		{"DELETE", base + "/" + h.ID, "", http.StatusUnauthorized},
		{"PUT", base + "/" + h.ID, acmeKey, http.StatusMethodNotAllowed},
		{"GET", base + "/" + h.ID, acmeKey, http.StatusOK},
	} {
		if rep := do(t, req{Method: c.method, URL: c.url, Key: c.key, NoTus: true}); rep.Status != c.want {
			t.Fatalf("%s %s as %q: got %d %s, want %d", c.method, c.url, c.key, rep.Status, rep.Body, c.want)
		}
	}
	rep := do(t, req{Method: "GET", URL: base, Key: globexKey, NoTus: true})
	if rep.Status != http.StatusOK || strings.Contains(string(rep.Body), h.ID) {
		t.Fatalf("globex's list: got %d %s, want 200 without acme's webhook", rep.Status, rep.Body)
	}
	for _, body := range []string{`{"url":"ftp://x/y"}`, `{"url":"https://x/y","events":["asset.exploded"]}`, `not json`} {
		rep := do(t, req{Method: "POST", URL: base, Key: acmeKey, NoTus: true, Body: strings.NewReader(body)})
		if rep.Status != http.StatusBadRequest || !strings.Contains(string(rep.Body), "invalid_webhook") {
			t.Fatalf("POST %s: got %d %s, want 400 invalid_webhook", body, rep.Status, rep.Body)
		}
	}
	if rep := do(t, req{Method: "DELETE", URL: base + "/" + h.ID, Key: acmeKey, NoTus: true}); rep.Status != http.StatusNoContent {
		t.Fatalf("DELETE own webhook: got %d %s, want 204", rep.Status, rep.Body)
	}
	if rep := do(t, req{Method: "GET", URL: base + "/" + h.ID, Key: acmeKey, NoTus: true}); rep.Status != http.StatusNotFound {
		t.Fatalf("GET deleted webhook: got %d, want 404", rep.Status)
	}
}

// nullStr shows a nullable JSON string.
func nullStr(p *string) string {
	if p == nil {
		return "null"
	}
	return strconv.Quote(*p)
}
