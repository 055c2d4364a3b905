package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// postWebhook POSTs a webhook registration and returns the reply.
func postWebhook(t *testing.T, s *server, key, hookURL string) reply {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"url": hookURL})
	return do(t, req{Method: "POST", URL: s.URL + "/api/v1/webhooks", Key: key, NoTus: true, Body: bytes.NewReader(body),
		Header: map[string]string{"Content-Type": "application/json"}})
}

// TestWebhookTargetsRefused: without --webhook-allowed-networks, a URL
// that names the server itself, its cloud's metadata service or a private
// network, in any spelling, or carries user:password@, is refused at
// registration with 400 invalid_webhook; a public DNS name is taken. The
// loopback forms point at a live receiver, which gets nothing.
func TestWebhookTargetsRefused(t *testing.T) {
	s := startServer(t)
	wr := testsvc.StartWebhookReceiver(t)
	u, _ := url.Parse(wr.URL)
	port := u.Port()
	for _, target := range []string{
		wr.URL,
		"http://localhost:" + port + "/",
		"http://LocalHost.:" + port + "/",
		"http://0.0.0.0:" + port + "/",
		"http://[::ffff:127.0.0.1]:" + port + "/",
		"http://u:p@127.0.0.1:" + port + "/",
		"http://u:p@example.com/",
		"http://2130706433:" + port + "/",
		"http://0x7f000001:" + port + "/",
		"http://0177.0.0.1:" + port + "/",
		"http://127.1:" + port + "/",
		"http://169.254.169.254/latest/meta-data/",
		"http://10.0.0.1/",
		"http://172.16.0.1/",
		"http://192.168.0.1/",
		"http://[::1]:" + port + "/",
		"http://[fd00::1]/",
		"http://100.64.0.1/",
		"http://[fe80::1]/",
		"http://[64:ff9b::a9fe:a9fe]/",
		"http://[::ffff:a9fe:a9fe]/",
	} {
		rep := postWebhook(t, s, acmeKey, target)
		if rep.Status != http.StatusBadRequest || !strings.Contains(string(rep.Body), `"invalid_webhook"`) {
			t.Errorf("POST webhook %s: got %d %s, want 400 invalid_webhook", target, rep.Status, rep.Body)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	rep := do(t, req{Method: "GET", URL: s.URL + "/api/v1/webhooks", Key: acmeKey, NoTus: true})
	if rep.Status != http.StatusOK || strings.Contains(string(rep.Body), `"id"`) {
		t.Fatalf("webhooks after the refusals: got %d %s, want none", rep.Status, rep.Body)
	}
	// A public name is not resolved at registration: taken (and deleted
	// before anything is queued for it).
	h := createWebhook(t, s, acmeKey, nil, "https://hooks.example.com/roughy")
	if rep := do(t, req{Method: "DELETE", URL: s.URL + "/api/v1/webhooks/" + h.ID, Key: acmeKey, NoTus: true}); rep.Status != http.StatusNoContent {
		t.Fatalf("DELETE webhook: got %d", rep.Status)
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(wr.Deliveries()) + len(wr.BadSignatures()); n != 0 {
		t.Fatalf("requests to the loopback receiver: got %d, want 0", n)
	}
}

// TestWebhookRefusedAtDelivery: the address is checked again at every
// delivery, where it is dialled. A loopback webhook registered while
// ROUGHY_WEBHOOK_ALLOWED_NETWORKS let it in is, once the server runs
// without it, never dialled: its delivery record says blocked_address and
// the receiver gets no request. A DNS name that resolves to loopback
// (a rebinding) passes registration and is refused the same way.
func TestWebhookRefusedAtDelivery(t *testing.T) {
	s := startServer(t, withArgs("--webhook-retry-base", "200ms", "--webhook-retry-max", "1s"),
		withEnv("ROUGHY_WEBHOOK_ALLOWED_NETWORKS="+loopbackReceivers))
	wr := testsvc.StartWebhookReceiver(t)
	h := createWebhook(t, s, acmeKey, wr, wr.URL, "asset.created")
	s.Stop()
	s.Env = slices.DeleteFunc(s.Env, func(kv string) bool { return strings.HasPrefix(kv, "ROUGHY_WEBHOOK_ALLOWED_NETWORKS=") })
	s.Restart()
	if rep := postWebhook(t, s, acmeKey, wr.URL); rep.Status != http.StatusBadRequest {
		t.Fatalf("POST the loopback webhook without the allow-list: got %d %s, want 400", rep.Status, rep.Body)
	}

	// A name that resolves to loopback here, if the host has one.
	var named webhookJSON
	host, _ := os.Hostname()
	if addrs, err := net.LookupHost(host); err == nil && len(addrs) > 0 && !slices.ContainsFunc(addrs, func(a string) bool {
		ip := net.ParseIP(a)
		return ip == nil || !ip.IsLoopback()
	}) {
		u, _ := url.Parse(wr.URL)
		named = createWebhook(t, s, globexKey, nil, "http://"+strings.ToLower(host)+":"+u.Port()+"/named", "asset.created")
		createUpload(t, s, globexKey, 10)
	} else {
		t.Logf("the hostname %q does not resolve to loopback only (%v, %v): the DNS case is not run", host, addrs, err)
	}

	createUpload(t, s, acmeKey, 10)
	blocked := func(ds []deliveryJSON) bool {
		return len(ds) == 1 && ds[0].Attempts >= 2 && ds[0].LastError != nil && *ds[0].LastError == "blocked_address"
	}
	ds := waitDeliveries(t, s, acmeKey, h.ID, 15*time.Second, "blocked_address after attempts", blocked)
	if ds[0].State != "retrying" || ds[0].LastStatus != nil {
		t.Fatalf("record: got %+v, want retrying without a status", ds[0])
	}
	if named.ID != "" {
		waitDeliveries(t, s, globexKey, named.ID, 15*time.Second, "blocked_address after attempts (DNS name)", blocked)
	}
	if n := len(wr.Deliveries()) + len(wr.BadSignatures()); n != 0 {
		t.Fatalf("requests to the receiver: got %d, want 0 (refused before dialling)", n)
	}
}

// TestWebhookFailureClasses: a delivery record names the class of its
// last failure (connection_refused, http_status, timeout), never the
// error text with its addresses.
func TestWebhookFailureClasses(t *testing.T) {
	s := startServer(t, withArgs("--webhook-retry-base", "200ms", "--webhook-retry-max", "1s", "--webhook-timeout", "1s",
		"--webhook-allowed-networks", loopbackReceivers))
	failing := testsvc.StartWebhookReceiver(t)
	failing.Respond = func(testsvc.WebhookDelivery, *http.Request) int { return http.StatusServiceUnavailable }
	hanging := testsvc.StartWebhookReceiver(t)
	release := make(chan struct{})
	hanging.Respond = func(_ testsvc.WebhookDelivery, r *http.Request) int {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return http.StatusOK
	}
	t.Cleanup(func() { close(release) }) // before the receivers close
	hooks := map[string]webhookJSON{
		"connection_refused": createWebhook(t, s, acmeKey, nil, fmt.Sprintf("http://127.0.0.1:%d/down", testsvc.FreePort(t)), "asset.created"),
		"http_status":        createWebhook(t, s, acmeKey, failing, failing.URL, "asset.created"),
		"timeout":            createWebhook(t, s, acmeKey, hanging, hanging.URL, "asset.created"),
	}
	createUpload(t, s, acmeKey, 10)
	for class, h := range hooks {
		ds := waitDeliveries(t, s, acmeKey, h.ID, 15*time.Second, "a failed attempt", func(ds []deliveryJSON) bool {
			return len(ds) == 1 && ds[0].Attempts >= 1 && ds[0].LastError != nil
		})
		d := ds[0]
		if *d.LastError != class {
			t.Errorf("%s: last_error %s, want %q", h.URL, nullStr(d.LastError), class)
		}
		if want := class == "http_status"; (d.LastStatus != nil) != want || want && *d.LastStatus != http.StatusServiceUnavailable {
			t.Errorf("%s: last_status %v, want 503 only for http_status", h.URL, d.LastStatus)
		}
	}
}

// TestWebhookFairness: one account's receiver that never answers does not
// hold back another account's events. Account A has 16 webhooks at a
// receiver that holds every request for the 30 s timeout: delivered one
// after another, 4 workers at a time, they would keep B's event waiting
// over 2 minutes. B's event is delivered while A's first requests still
// hang.
func TestWebhookFairness(t *testing.T) {
	s := startServer(t, withArgs("--webhook-timeout", "30s", "--webhook-workers", "4", "--webhook-allowed-networks", loopbackReceivers))
	var mu sync.Mutex
	var open, total int
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		mu.Lock()
		open++
		total++
		mu.Unlock()
		defer func() { mu.Lock(); open--; mu.Unlock() }()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) }) // runs first: the handlers end
	counts := func() (int, int) { mu.Lock(); defer mu.Unlock(); return open, total }

	for i := range 16 {
		createWebhook(t, s, acmeKey, nil, fmt.Sprintf("%s/a/%d", hang.URL, i), "asset.created")
	}
	createUpload(t, s, acmeKey, 10)
	deadline := time.Now().Add(15 * time.Second)
	for o, _ := counts(); o == 0; o, _ = counts() {
		if time.Now().After(deadline) {
			t.Fatal("A's receiver got no request within 15 s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	wr := testsvc.StartWebhookReceiver(t)
	createWebhook(t, s, globexKey, wr, wr.URL, "asset.created")
	b := createUpload(t, s, globexKey, 10)
	wr.WaitFor(t, 20*time.Second, "B's asset.created", func(ds []testsvc.WebhookDelivery) bool {
		return len(testsvc.OfType(ds, "asset.created", b.AssetID)) > 0
	})
	o, n := counts()
	if o == 0 || o != n {
		t.Fatalf("when B's event arrived: %d of A's %d requests still open, want all of them (none timed out yet)", o, n)
	}
	if o > 2 {
		t.Fatalf("A's requests in flight to one endpoint: got %d, want at most 2", o)
	}
}

// TestWebhookCap: an account has at most 16 webhooks; the 17th is 409
// too_many_webhooks, another account is not held to the first's count,
// and a deletion makes room.
func TestWebhookCap(t *testing.T) {
	s := startServer(t)
	var first webhookJSON
	for i := range 16 {
		h := createWebhook(t, s, acmeKey, nil, fmt.Sprintf("https://hooks.example.com/%d", i))
		if i == 0 {
			first = h
		}
	}
	rep := postWebhook(t, s, acmeKey, "https://hooks.example.com/17")
	if rep.Status != http.StatusConflict || !strings.Contains(string(rep.Body), `"too_many_webhooks"`) {
		t.Fatalf("17th webhook: got %d %s, want 409 too_many_webhooks", rep.Status, rep.Body)
	}
	var list struct {
		Webhooks []webhookJSON `json:"webhooks"`
	}
	rep = do(t, req{Method: "GET", URL: s.URL + "/api/v1/webhooks", Key: acmeKey, NoTus: true})
	if json.Unmarshal(rep.Body, &list) != nil || len(list.Webhooks) != 16 {
		t.Fatalf("webhooks after the refusal: got %d %s, want 16", rep.Status, rep.Body)
	}
	createWebhook(t, s, globexKey, nil, "https://hooks.example.com/globex")
	if rep := do(t, req{Method: "DELETE", URL: s.URL + "/api/v1/webhooks/" + first.ID, Key: acmeKey, NoTus: true}); rep.Status != http.StatusNoContent {
		t.Fatalf("DELETE webhook: got %d", rep.Status)
	}
	createWebhook(t, s, acmeKey, nil, "https://hooks.example.com/17")
}
