package redis_test

import (
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/sessionstore"

	"github.com/roughy/ingest/sessionstore/redis"
)

// redisBacklog is a backlog of unread queue entries above 100,000, where
// an XADD with MAXLEN ~ 100000 would trim the oldest of them.
const redisBacklog = 100_500

// TestRedisQueuesKeepBacklog: with a backlog no consumer has read yet,
// every way a job enters the probe and webhook streams (a completing
// commit, a due retry moved back, an enqueued event) adds its entry and
// trims none: an entry leaves its stream only once it is settled.
func TestRedisQueuesKeepBacklog(t *testing.T) {
	server := testsvc.StartRedisServer(t)
	nodes := testsvc.StartRedisCluster(t)
	for _, tc := range []struct{ name, url string }{{"standalone", server.URL()}, {"cluster", nodes}} {
		t.Run(tc.name, func(t *testing.T) {
			st := newRedis(t, tc.url)
			ctx := t.Context()
			check := func(queue, after string, want int64) {
				t.Helper()
				n, err := redis.StreamLen(ctx, st, queue)
				if err != nil || n != want {
					t.Fatalf("%s stream after %s: got %d entries (%v), want %d: entries were trimmed", queue, after, n, err, want)
				}
			}

			if err := redis.FillQueue(ctx, st, "probe", redisBacklog); err != nil {
				t.Fatalf("fill probe stream: %v", err)
			}
			s := redisUpload(t, st, 100)
			l, err := st.AcquireLease(ctx, s.ID, time.Minute, 1)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Commit(ctx, l, sessionstore.Commit{NewOffset: 100, Length: -1, Complete: true, SHA256: "ff",
				Parts: []sessionstore.Part{{Number: l.FirstPart, ETag: `"e"`, Size: 100}}}); err != nil {
				t.Fatalf("completing Commit: %v", err)
			}
			check("probe", "a completing commit", redisBacklog+1)
			j, err := st.ClaimProbe(ctx, "c", 0, time.Hour)
			if err != nil {
				t.Fatalf("ClaimProbe: %v", err)
			}
			if err := st.RetryProbe(ctx, j, 0, "test"); err != nil {
				t.Fatalf("RetryProbe: %v", err)
			}
			check("probe", "a retry was scheduled", redisBacklog)
			if _, err := st.ClaimProbe(ctx, "c", 0, time.Hour); err != nil {
				t.Fatalf("ClaimProbe: %v", err)
			}
			check("probe", "the due retry was moved back", redisBacklog+1)

			if err := st.CreateWebhook(ctx, sessionstore.Webhook{ID: "wh-backlog", Account: "acme", URL: "http://127.0.0.1:1/",
				Events: sessionstore.EventTypes, Secret: "s", CreatedAt: time.Now()}); err != nil {
				t.Fatalf("CreateWebhook: %v", err)
			}
			if err := redis.FillQueue(ctx, st, "webhook", redisBacklog); err != nil {
				t.Fatalf("fill webhook stream: %v", err)
			}
			ev := sessionstore.WebhookEvent{ID: "ev-backlog", Type: sessionstore.EventAssetReady, Time: time.Now()}
			if n, err := st.EnqueueWebhookEvent(ctx, "acme", ev); err != nil || n != 1 {
				t.Fatalf("EnqueueWebhookEvent: got %d, %v; want 1 delivery", n, err)
			}
			check("webhook", "an enqueued event", redisBacklog+1)
			wj, err := st.ClaimWebhook(ctx, "c", 0, time.Hour)
			if err != nil {
				t.Fatalf("ClaimWebhook: %v", err)
			}
			if err := st.SettleWebhook(ctx, wj, sessionstore.WebhookOutcome{State: sessionstore.DeliveryRetrying}); err != nil {
				t.Fatalf("SettleWebhook: %v", err)
			}
			check("webhook", "a retry was scheduled", redisBacklog)
			if _, err := st.ClaimWebhook(ctx, "c", 0, time.Hour); err != nil {
				t.Fatalf("ClaimWebhook: %v", err)
			}
			check("webhook", "the due retry was moved back", redisBacklog+1)
		})
	}
}
