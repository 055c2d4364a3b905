package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"

	"github.com/roughy/ingest/sessionstore/redis"
)

// TestQueueLengthMetricRedis: roughy_queue_length shows the jobs of the
// probe and webhook queues that are not settled yet, read from real
// Redis at each scrape: it grows with completed uploads and queued events
// nobody consumed, counts a delivery scheduled for a retry, and drops when
// a job is settled.
func TestQueueLengthMetricRedis(t *testing.T) {
	ctx := t.Context()
	store, err := redis.New(ctx, testsvc.StartRedis(t))
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	sink, err := pipeline.NewLocalSink(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.SigningKey, cfg.Logger = []byte("test signing key"), slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := New(cfg, store, pipeline.New(sink))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	scrape := func(step string, probe, webhook float64) {
		t.Helper()
		m := testsvc.ScrapeMetrics(t, "http://"+ln.Addr().String()+"/metrics")
		for queue, want := range map[string]float64{"probe": probe, "webhook": webhook} {
			if got, ok := m.Sum("roughy_queue_length", `queue="`+queue+`"`); !ok || got != want {
				t.Errorf("%s: roughy_queue_length{queue=%q}: got %v (present %v), want %v", step, queue, got, ok, want)
			}
		}
	}
	scrape("empty", 0, 0)

	if err := store.CreateWebhook(ctx, sessionstore.Webhook{ID: "wh-metric", Account: "acme", URL: "http://127.0.0.1:1/",
		Events: sessionstore.EventTypes, Secret: "s", CreatedAt: time.Now()}); err != nil {
		t.Fatalf("CreateWebhook: %v", err)
	}
	for i := range 3 {
		ev := sessionstore.WebhookEvent{ID: fmt.Sprintf("ev-%d", i), Type: sessionstore.EventAssetCreated, Time: time.Now()}
		if _, err := store.EnqueueWebhookEvent(ctx, "acme", ev); err != nil {
			t.Fatalf("EnqueueWebhookEvent: %v", err)
		}
	}
	for i := range 2 {
		id := fmt.Sprintf("qm-%d", i)
		now := time.Now()
		if err := store.CreateUpload(ctx, sessionstore.Session{ID: id, Account: "acme", AssetID: id, Length: 10, NextPart: 1,
			CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
			sessionstore.Asset{ID: id, Account: "acme", SessionID: id, Type: "video", State: sessionstore.StateUploading,
				SizeBytes: 10, CreatedAt: now}); err != nil {
			t.Fatalf("CreateUpload: %v", err)
		}
		l, err := store.AcquireLease(ctx, id, time.Minute, 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Commit(ctx, l, sessionstore.Commit{NewOffset: 10, Length: -1, Complete: true, SHA256: "ff",
			Parts: []sessionstore.Part{{Number: l.FirstPart, ETag: `"e"`, Size: 10}}}); err != nil {
			t.Fatalf("completing Commit: %v", err)
		}
	}
	scrape("3 events queued, 2 uploads completed", 2, 3)

	job, err := store.ClaimWebhook(ctx, "c", time.Second, time.Hour)
	if err != nil {
		t.Fatalf("ClaimWebhook: %v", err)
	}
	if err := store.SettleWebhook(ctx, job, sessionstore.WebhookOutcome{State: sessionstore.DeliveryRetrying, RetryIn: time.Hour}); err != nil {
		t.Fatalf("SettleWebhook: %v", err)
	}
	scrape("a delivery scheduled for a retry in an hour", 2, 3)
	if job, err = store.ClaimWebhook(ctx, "c", time.Second, time.Hour); err != nil {
		t.Fatalf("ClaimWebhook: %v", err)
	}
	if err := store.SettleWebhook(ctx, job, sessionstore.WebhookOutcome{State: sessionstore.DeliveryDelivered, Status: 204}); err != nil {
		t.Fatalf("SettleWebhook: %v", err)
	}
	pj, err := store.ClaimProbe(ctx, "c", time.Second, time.Hour)
	if err != nil {
		t.Fatalf("ClaimProbe: %v", err)
	}
	if err := store.AckProbe(ctx, pj, "1.5"); err != nil {
		t.Fatalf("AckProbe: %v", err)
	}
	scrape("a delivery and a probe settled", 1, 2)
}
