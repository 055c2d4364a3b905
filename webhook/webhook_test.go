package webhook

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/sessionstore"
)

// loopback lets the tests' httptest receivers in.
var loopback = Targets{Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}

// fakeStore is a Store made of function fields.
type fakeStore struct {
	webhook func(id string) (sessionstore.Webhook, error)
	settled []sessionstore.WebhookOutcome
	jobs    []sessionstore.WebhookJob // as settled
}

func (f *fakeStore) ClaimWebhook(context.Context, string, time.Duration, time.Duration) (sessionstore.WebhookJob, error) {
	return sessionstore.WebhookJob{}, sessionstore.ErrEmpty
}

func (f *fakeStore) SettleWebhook(_ context.Context, job sessionstore.WebhookJob, out sessionstore.WebhookOutcome) error {
	f.settled = append(f.settled, out)
	f.jobs = append(f.jobs, job)
	return nil
}

func (f *fakeStore) Webhook(_ context.Context, id string) (sessionstore.Webhook, error) {
	return f.webhook(id)
}

func TestDelay(t *testing.T) {
	d := New(Config{BaseDelay: time.Second, MaxDelay: 10 * time.Second}, &fakeStore{})
	for attempt, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second} {
		if got := d.Delay(attempt); got != want {
			t.Fatalf("Delay(%d): got %v, want %v", attempt, got, want)
		}
	}
}

func TestSignVerifies(t *testing.T) {
	body := []byte(`{"id":"e1"}`)
	now := time.Now()
	h := Sign("whsec_s", now, body)
	if err := testsvc.VerifyWebhook("whsec_s", h, body, now); err != nil {
		t.Fatalf("VerifyWebhook(Sign(...)): got %v, want nil", err)
	}
	for name, err := range map[string]error{
		"other secret": testsvc.VerifyWebhook("whsec_t", h, body, now),
		"other body":   testsvc.VerifyWebhook("whsec_s", h, []byte(`{"id":"e2"}`), now),
		"replayed":     testsvc.VerifyWebhook("whsec_s", h, body, now.Add(10*time.Minute)),
	} {
		if err == nil {
			t.Fatalf("%s: verified, want an error", name)
		}
	}
}

// TestHandleOutcomes: 2xx is delivered; a failure is retried with the
// backoff delay while MaxAge allows, then dead; a deleted webhook is dead.
func TestHandleOutcomes(t *testing.T) {
	status := http.StatusOK
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	defer recv.Close()
	hook := sessionstore.Webhook{ID: "h1", URL: recv.URL, Secret: "whsec_x"}
	st := &fakeStore{webhook: func(id string) (sessionstore.Webhook, error) {
		if id != hook.ID {
			return sessionstore.Webhook{}, sessionstore.ErrNotFound
		}
		return hook, nil
	}}
	d := New(Config{BaseDelay: time.Second, MaxDelay: time.Minute, MaxAge: time.Hour, Targets: loopback}, st)
	job := func(hookID string, attempts int, age time.Duration) sessionstore.WebhookJob {
		return sessionstore.WebhookJob{ID: "j", HookID: hookID, Attempts: attempts, Since: time.Now().Add(-age),
			Event: sessionstore.WebhookEvent{ID: "e", Type: sessionstore.EventAssetReady}}
	}
	for _, c := range []struct {
		name   string
		status int
		job    sessionstore.WebhookJob
		want   sessionstore.WebhookOutcome
	}{
		{"2xx", http.StatusAccepted, job("h1", 0, 0), sessionstore.WebhookOutcome{State: sessionstore.DeliveryDelivered, Status: 202}},
		{"500, young", 500, job("h1", 2, time.Minute), sessionstore.WebhookOutcome{State: sessionstore.DeliveryRetrying, Status: 500, RetryIn: 4 * time.Second, Error: ClassStatus}},
		{"500, old", 500, job("h1", 9, time.Hour), sessionstore.WebhookOutcome{State: sessionstore.DeliveryDead, Status: 500, Error: ClassStatus}},
		{"redirect", http.StatusFound, job("h1", 0, 0), sessionstore.WebhookOutcome{State: sessionstore.DeliveryRetrying, Status: 302, RetryIn: time.Second, Error: ClassStatus}},
		{"deleted webhook", 200, job("gone", 0, 0), sessionstore.WebhookOutcome{State: sessionstore.DeliveryDead, Error: ClassDeleted}},
	} {
		status = c.status
		st.settled = nil
		if err := d.Handle(t.Context(), c.job); err != nil {
			t.Fatalf("%s: Handle: %v", c.name, err)
		}
		if len(st.settled) != 1 {
			t.Fatalf("%s: got %d settles, want 1", c.name, len(st.settled))
		}
		got := st.settled[0]
		if got != c.want {
			t.Fatalf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}

// TestHandleTimeout: a receiver slower than Timeout is a failure to
// retry, and the delivery gives up on it at Timeout.
func TestHandleTimeout(t *testing.T) {
	release := make(chan struct{})
	recv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer recv.Close()
	defer close(release)
	st := &fakeStore{webhook: func(string) (sessionstore.Webhook, error) {
		return sessionstore.Webhook{ID: "h1", URL: recv.URL, Secret: "whsec_x"}, nil
	}}
	d := New(Config{Timeout: 200 * time.Millisecond, BaseDelay: time.Second, Targets: loopback}, st)
	start := time.Now()
	err := d.Handle(t.Context(), sessionstore.WebhookJob{ID: "j", HookID: "h1", Since: time.Now(),
		Event: sessionstore.WebhookEvent{ID: "e", Type: sessionstore.EventAssetCreated}})
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Handle took %v, want about the 200ms timeout", took)
	}
	if len(st.settled) != 1 || st.settled[0].State != sessionstore.DeliveryRetrying || st.settled[0].Status != 0 ||
		st.settled[0].Error != ClassTimeout {
		t.Fatalf("settled: got %+v, want one retry without a status, error %q", st.settled, ClassTimeout)
	}
}

// TestHandleVerify: an event queued before its change is never posted
// unverified: a change not seen yet is checked again after VerifyDelay
// until VerifyFor after the event, then dropped; a seen one is requeued
// verified, with the asset Verify answered; a failed check never drops.
// A young event is checked again sooner than VerifyDelay.
func TestHandleVerify(t *testing.T) {
	posts := 0
	recv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { posts++ }))
	defer recv.Close()
	hook := sessionstore.Webhook{ID: "h1", URL: recv.URL, Secret: "whsec_x"}
	st := &fakeStore{webhook: func(string) (sessionstore.Webhook, error) { return hook, nil }}
	var happened bool
	var verifyErr error
	d := New(Config{VerifyFor: time.Minute, VerifyDelay: 3 * time.Second,
		Verify: func(_ context.Context, ev sessionstore.WebhookEvent) (sessionstore.Asset, bool, error) {
			a := ev.Asset
			a.State = sessionstore.StateReady
			return a, happened, verifyErr
		}}, st)
	job := func(age time.Duration) sessionstore.WebhookJob {
		return sessionstore.WebhookJob{ID: "j", HookID: hook.ID, Since: time.Now(), Event: sessionstore.WebhookEvent{
			ID: "e", Type: sessionstore.EventAssetReady, Time: time.Now().Add(-age), Verify: true,
			Asset: sessionstore.Asset{ID: "a", State: sessionstore.StateUploading}}}
	}
	for _, c := range []struct {
		name      string
		happened  bool
		err       error
		age       time.Duration
		state     string
		retryIn   time.Duration
		verifyNow bool
	}{
		{"not yet", false, nil, 10 * time.Second, sessionstore.DeliveryPending, 3 * time.Second, true},
		{"never", false, nil, 2 * time.Minute, sessionstore.DeliveryDropped, 0, true},
		{"happened", true, nil, 2 * time.Minute, sessionstore.DeliveryPending, 0, false},
		{"check failed", false, errors.New("store down"), time.Hour, sessionstore.DeliveryPending, 3 * time.Second, true},
	} {
		happened, verifyErr = c.happened, c.err
		st.settled, st.jobs = nil, nil
		if err := d.Handle(t.Context(), job(c.age)); err != nil {
			t.Fatalf("%s: Handle: %v", c.name, err)
		}
		if len(st.settled) != 1 || st.settled[0].State != c.state || st.settled[0].RetryIn != c.retryIn {
			t.Fatalf("%s: settled %+v, want state %s, retry in %v", c.name, st.settled, c.state, c.retryIn)
		}
		if ev := st.jobs[0].Event; ev.Verify != c.verifyNow || !c.verifyNow && ev.Asset.State != sessionstore.StateReady {
			t.Fatalf("%s: settled event %+v, want verify %v (verified: with the asset Verify answered)", c.name, ev, c.verifyNow)
		}
	}
	// A young event is checked again soon: its change is mostly a few
	// milliseconds behind.
	happened, verifyErr, st.settled, st.jobs = false, nil, nil, nil
	if err := d.Handle(t.Context(), job(0)); err != nil {
		t.Fatal(err)
	}
	if out := st.settled[0]; out.State != sessionstore.DeliveryPending || out.RetryIn > 100*time.Millisecond {
		t.Fatalf("young event not seen yet: settled %+v, want pending, checked again within 100ms", out)
	}
	if posts != 0 {
		t.Fatalf("posts before a delivery of a verified job: got %d, want 0", posts)
	}
}

// TestEventIDPerChange: an event's id is that of the change it reports:
// the same for the same account, type, asset and outcome, different when
// any of them differs, and a well-formed UUID (version 8).
func TestEventIDPerChange(t *testing.T) {
	id := EventID("acme", sessionstore.EventAssetReady, "asset-1", false)
	if again := EventID("acme", sessionstore.EventAssetReady, "asset-1", false); again != id {
		t.Fatalf("same change: ids %s and %s, want one", id, again)
	}
	if ev := NewEvent(sessionstore.EventAssetReady, sessionstore.Asset{ID: "asset-1", Account: "acme"}, ""); ev.ID != id {
		t.Fatalf("NewEvent: id %s, want EventID's %s", ev.ID, id)
	}
	for _, other := range []string{
		EventID("globex", sessionstore.EventAssetReady, "asset-1", false),
		EventID("acme", sessionstore.EventAssetDeleted, "asset-1", false),
		EventID("acme", sessionstore.EventAssetReady, "asset-2", false),
		EventID("acme", sessionstore.EventAssetReady, "asset-1", true),
	} {
		if other == id {
			t.Fatalf("another change has the id %s too", id)
		}
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
		t.Fatalf("id %q is not a version 8 UUID", id)
	}
}

// TestHandlePutsOffBusyEndpoint: while an endpoint has its cap of
// deliveries in flight, another job for it goes back to the queue at once
// (pending, with a delay, never posted), and another account's job is
// delivered meanwhile.
func TestHandlePutsOffBusyEndpoint(t *testing.T) {
	held, release := make(chan struct{}), make(chan struct{})
	posts := map[string]int{}
	var mu sync.Mutex
	recv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		mu.Lock()
		posts[r.URL.Path]++
		mu.Unlock()
		if r.URL.Path == "/slow" {
			close(held)
			<-release
		}
	}))
	defer recv.Close()
	hooks := map[string]sessionstore.Webhook{
		"a1": {ID: "a1", Account: "a", URL: recv.URL + "/slow", Secret: "whsec_x"},
		"a2": {ID: "a2", Account: "a", URL: recv.URL + "/other-path", Secret: "whsec_x"},
		"b":  {ID: "b", Account: "b", URL: recv.URL + "/fast", Secret: "whsec_x"},
	}
	st := &fakeStore{webhook: func(id string) (sessionstore.Webhook, error) { return hooks[id], nil }}
	d := New(Config{EndpointConcurrency: 1, Timeout: 10 * time.Second, Targets: loopback}, st)
	job := func(hook string) sessionstore.WebhookJob {
		return sessionstore.WebhookJob{ID: "j-" + hook, HookID: hook, Since: time.Now(),
			Event: sessionstore.WebhookEvent{ID: "e", Type: sessionstore.EventAssetReady}}
	}
	done := make(chan error)
	go func() { done <- d.Handle(t.Context(), job("a1")) }()
	<-held
	// a2 is the same endpoint (scheme://host:port) as a1.
	if err := d.Handle(t.Context(), job("a2")); err != nil {
		t.Fatal(err)
	}
	if err := d.Handle(t.Context(), job("b")); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(st.settled) != 3 {
		t.Fatalf("settled: got %+v, want 3", st.settled)
	}
	if out := st.settled[0]; out.State != sessionstore.DeliveryPending || out.RetryIn <= 0 || out.RetryIn > 10*time.Second {
		t.Fatalf("job of the busy endpoint: settled %+v, want pending with a delay within the timeout", out)
	}
	if out := st.settled[1]; out.State != sessionstore.DeliveryDelivered || st.jobs[1].HookID != "b" {
		t.Fatalf("other account's job: settled %+v for %s, want delivered", out, st.jobs[1].HookID)
	}
	if st.settled[2].State != sessionstore.DeliveryDelivered {
		t.Fatalf("held job: settled %+v, want delivered", st.settled[2])
	}
	if posts["/other-path"] != 0 || posts["/slow"] != 1 || posts["/fast"] != 1 {
		t.Fatalf("posts: got %v, want /slow and /fast once, /other-path never", posts)
	}
}
