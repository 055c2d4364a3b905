package testsvc

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// WebhookDelivery is one request a WebhookReceiver got, signature checked.
type WebhookDelivery struct {
	ID    string         `json:"id"`
	Type  string         `json:"type"`
	Time  string         `json:"time"`
	Asset map[string]any `json:"asset"`
	Error string         `json:"error"`
	// Header is the request's; Attempt counts the requests for this event
	// id so far, this one included (1 = first).
	Header  http.Header `json:"-"`
	Attempt int         `json:"-"`
	At      time.Time   `json:"-"`
}

// WebhookReceiver is an HTTP endpoint for Roughy's webhooks. It checks each
// request's Roughy-Signature on its own, the way the README tells users to
// (HMAC-SHA256 of "<t>.<body>" with the secret, t within 5 minutes), and
// records the deliveries whose signature holds; the others are answered
// 400 and counted in BadSignatures.
type WebhookReceiver struct {
	URL string
	// Respond, when set, answers a verified delivery (default 204). It may
	// block; r is the request (its context ends when the sender hangs up).
	Respond func(d WebhookDelivery, r *http.Request) int

	mu     sync.Mutex
	secret string
	got    []WebhookDelivery
	bad    []string
}

// StartWebhookReceiver starts a receiver on a loopback port until the test
// ends.
func StartWebhookReceiver(t testing.TB) *WebhookReceiver {
	t.Helper()
	wr := &WebhookReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(wr.serve))
	t.Cleanup(srv.Close)
	wr.URL = srv.URL + "/hooks/roughy"
	return wr
}

// SetSecret sets the signing secret (known once the webhook is created).
func (wr *WebhookReceiver) SetSecret(s string) {
	wr.mu.Lock()
	wr.secret = s
	wr.mu.Unlock()
}

func (wr *WebhookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	wr.mu.Lock()
	secret := wr.secret
	wr.mu.Unlock()
	if err == nil {
		err = VerifyWebhook(secret, r.Header.Get("Roughy-Signature"), body, time.Now())
	}
	var d WebhookDelivery
	if err == nil {
		err = json.Unmarshal(body, &d)
	}
	if err != nil {
		wr.mu.Lock()
		wr.bad = append(wr.bad, err.Error())
		wr.mu.Unlock()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	d.Header, d.At = r.Header.Clone(), time.Now()
	wr.mu.Lock()
	d.Attempt = 1
	for _, prev := range wr.got {
		if prev.ID == d.ID {
			d.Attempt++
		}
	}
	wr.got = append(wr.got, d)
	respond := wr.Respond
	wr.mu.Unlock()
	status := http.StatusNoContent
	if respond != nil {
		status = respond(d, r)
	}
	w.WriteHeader(status)
}

// HoldFirst makes the receiver hold its first delivery open until the
// sender hangs up (a node killed mid-delivery) and take every later one
// with 204. The channel is closed once the first delivery is held.
func (wr *WebhookReceiver) HoldFirst() <-chan struct{} {
	holding := make(chan struct{})
	var once sync.Once
	wr.Respond = func(_ WebhookDelivery, r *http.Request) int {
		held := false
		once.Do(func() { held = true })
		if !held {
			return http.StatusNoContent
		}
		close(holding)
		<-r.Context().Done()
		return http.StatusInternalServerError
	}
	return holding
}

// VerifyWebhook checks a Roughy-Signature header ("t=<unix>,v1=<hex>")
// against body: the HMAC-SHA256 of "<t>.<body>" keyed with secret, and t
// within 5 minutes of now.
func VerifyWebhook(secret, header string, body []byte, now time.Time) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return fmt.Errorf("malformed signature header %q", header)
	}
	if d := now.Sub(time.Unix(t, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("signature timestamp %d is %v away", t, d)
	}
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "%d.", t)
	m.Write(body)
	want := hex.EncodeToString(m.Sum(nil))
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return fmt.Errorf("signature %s does not match the body", sig)
	}
	return nil
}

// Deliveries returns what was received so far, in order.
func (wr *WebhookReceiver) Deliveries() []WebhookDelivery {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	return append([]WebhookDelivery(nil), wr.got...)
}

// BadSignatures lists why requests were refused.
func (wr *WebhookReceiver) BadSignatures() []string {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	return append([]string(nil), wr.bad...)
}

// WaitFor polls until ok holds for the deliveries received, or fails the
// test after timeout.
func (wr *WebhookReceiver) WaitFor(t testing.TB, timeout time.Duration, what string, ok func([]WebhookDelivery) bool) []WebhookDelivery {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := wr.Deliveries()
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook receiver: %s: not within %v; got %d deliveries: %s (bad signatures: %v)",
				what, timeout, len(got), Summary(got), wr.BadSignatures())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Summary lists deliveries as "type(attempt)" for failure messages.
func Summary(ds []WebhookDelivery) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "%s#%d[%v] ", d.Type, d.Attempt, d.Asset["id"])
	}
	return b.String()
}

// OfType returns the deliveries of event type typ about asset id.
func OfType(ds []WebhookDelivery, typ, assetID string) []WebhookDelivery {
	var out []WebhookDelivery
	for _, d := range ds {
		if d.Type == typ && d.Asset["id"] == assetID {
			out = append(out, d)
		}
	}
	return out
}
