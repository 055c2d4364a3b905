package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
)

// TestWebhookCapRacing: creations racing past the per-account count never
// leave more than maxWebhooksPerAccount webhooks, and each one answered
// 201 is kept; one at a time, the next past the cap is 409.
func TestWebhookCapRacing(t *testing.T) {
	e := newEnv(t, nil, nil)
	const n = maxWebhooksPerAccount + 8
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			body := fmt.Appendf(nil, `{"url":"https://hooks.example.com/%d"}`, i)
			statuses[i] = e.do("POST", webhooksPath, e.tusHdr("acme", "Content-Type", "application/json"), body).status
		})
	}
	wg.Wait()
	created := 0
	for _, s := range statuses {
		switch s {
		case http.StatusCreated:
			created++
		case http.StatusConflict:
		default:
			t.Fatalf("POST webhook: got %d, want 201 or 409 (all: %v)", s, statuses)
		}
	}
	r := e.do("GET", webhooksPath, e.tusHdr("acme"), nil)
	var list struct {
		Webhooks []webhookJSON `json:"webhooks"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatalf("GET webhooks %d %s: %v", r.status, r.body, err)
	}
	if created != len(list.Webhooks) || created > maxWebhooksPerAccount {
		t.Fatalf("racing creations: %d answered 201, %d listed; want as many, at most %d", created, len(list.Webhooks), maxWebhooksPerAccount)
	}
	// Racers may all have gone; one at a time fills up to the cap.
	for i := created; ; i++ {
		r := e.do("POST", webhooksPath, e.tusHdr("acme", "Content-Type", "application/json"), []byte(`{"url":"https://hooks.example.com/x"}`))
		if r.status == http.StatusConflict {
			if i != maxWebhooksPerAccount {
				t.Fatalf("409 with %d webhooks, want it at %d", i, maxWebhooksPerAccount)
			}
			break
		}
		if r.status != http.StatusCreated || i > maxWebhooksPerAccount {
			t.Fatalf("POST webhook %d: got %d %s", i+1, r.status, r.body)
		}
	}
}
