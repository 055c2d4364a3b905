package fleet

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// fleetWebhooks: a delivery left by a dead node is reclaimed after 3 s;
// the receivers are on loopback.
var fleetWebhooks = []string{"--webhook-timeout", "2s", "--webhook-reclaim-after", "3s",
	"--webhook-retry-base", "200ms", "--webhook-retry-max", "1s", "--webhook-allowed-networks", "127.0.0.0/8"}

// TestWebhookKillDeliveringNode: the node delivering an event is killed -9
// while the receiver holds the request open; another node reclaims the
// delivery from the Redis stream and delivers it, with the same event id.
// The events are made on a node that delivers nothing: the queue is the
// fleet's, not a node's.
func TestWebhookKillDeliveringNode(t *testing.T) {
	f := startFleet(t, 0)
	deliverer := f.startNode(append(fleetWebhooks, "--webhook-workers", "1")...)
	front := f.startNode(append(fleetWebhooks, "--webhook-workers", "0")...)

	wr := testsvc.StartWebhookReceiver(t)
	holding := wr.HoldFirst()
	a := mustSend(t, "POST", front.URL+"/api/v1/webhooks", map[string]string{"Content-Type": "application/json"},
		strings.NewReader(`{"url":"`+wr.URL+`","events":["asset.created","asset.ready"]}`))
	var h struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	if a.Status != http.StatusCreated || json.Unmarshal(a.Body, &h) != nil || h.Secret == "" {
		t.Fatalf("POST /api/v1/webhooks: got %d %s, want 201 with a secret", a.Status, a.Body)
	}
	wr.SetSecret(h.Secret)

	data := []byte("fleet webhook bytes")
	loc, assetID := create(t, front, int64(len(data)))
	select {
	case <-holding:
	case <-time.After(15 * time.Second):
		t.Fatal("the receiver got no delivery within 15 s")
	}
	// The hung receiver holds the only delivery worker; uploads go on.
	start := time.Now()
	if a, err := patch(t.Context(), front.at(loc), 0, data); err != nil || a.Status != http.StatusNoContent {
		t.Fatalf("PATCH while the receiver hangs: got %v, %v; want 204", a.Status, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("PATCH while the receiver hangs took %v, want well under 2 s", took)
	}
	wantReady(t, front, assetID, data)
	held := wr.Deliveries()[0]

	deliverer.kill()
	f.startNode(append(fleetWebhooks, "--webhook-workers", "2")...)
	got := wr.WaitFor(t, 30*time.Second, "the held event again, and asset.ready", func(ds []testsvc.WebhookDelivery) bool {
		n := 0
		for _, d := range ds {
			if d.ID == held.ID {
				n++
			}
		}
		return n >= 2 && len(testsvc.OfType(ds, "asset.ready", assetID)) > 0
	})
	if held.Type != "asset.created" || held.Asset["id"] != assetID {
		t.Fatalf("held delivery: got %s of %v, want asset.created of %s", held.Type, held.Asset["id"], assetID)
	}
	if bad := wr.BadSignatures(); len(bad) > 0 {
		t.Fatalf("deliveries with bad signatures: %v (all: %s)", bad, testsvc.Summary(got))
	}
	// Both delivered, each exactly once after the kill: the reclaim does
	// not make a second copy of the event.
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := mustSend(t, "GET", front.URL+"/api/v1/webhooks/"+h.ID+"/deliveries", nil, nil)
		var body struct {
			Deliveries []struct {
				State    string `json:"state"`
				Attempts int    `json:"attempts"`
			} `json:"deliveries"`
		}
		// Not JSON yet (the node is busy): ask again.
		if json.Unmarshal(a.Body, &body) == nil && len(body.Deliveries) == 2 && body.Deliveries[0].State == "delivered" && body.Deliveries[1].State == "delivered" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries: got %d %s, want both delivered", a.Status, a.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if n := len(wr.Deliveries()); n != 3 {
		t.Fatalf("requests to the receiver: got %d (%s), want 3: the held one, its redelivery, asset.ready", n, testsvc.Summary(wr.Deliveries()))
	}
}
