package sessionstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// localHookRecord is a queued webhook delivery in boltBucketHookQueue (keys
// as in localQueue); WebhookJob.ID is the hex of its key, new on each retry.
type localHookRecord struct {
	HookID   string
	Event    WebhookEvent
	Attempts int
	Since    time.Time
}

// CreateWebhook stores an endpoint; ErrExists if its id is taken.
func (l *Local) CreateWebhook(ctx context.Context, h Webhook) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.update("create webhook", func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBucketHooks)
		if b.Get([]byte(h.ID)) != nil {
			return fmt.Errorf("webhook %s: %w", h.ID, ErrExists)
		}
		return boltPut(b, []byte(h.ID), h)
	})
}

// Webhooks lists an account's endpoints, oldest first.
func (l *Local) Webhooks(ctx context.Context, account string) ([]Webhook, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []Webhook
	err := l.view("webhooks", func(tx *bolt.Tx) error {
		var err error
		out, err = boltHooks(tx, account)
		return err
	})
	return out, err
}

// boltHooks lists account's endpoints, oldest first.
func boltHooks(tx *bolt.Tx, account string) ([]Webhook, error) {
	all, err := boltList[Webhook](tx.Bucket(boltBucketHooks))
	if err != nil {
		return nil, err
	}
	out := slices.DeleteFunc(all, func(h Webhook) bool { return h.Account != account })
	slices.SortStableFunc(out, func(a, b Webhook) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// Webhook returns one endpoint.
func (l *Local) Webhook(ctx context.Context, id string) (Webhook, error) {
	if err := ctx.Err(); err != nil {
		return Webhook{}, err
	}
	var h Webhook
	err := l.view("webhook", func(tx *bolt.Tx) error {
		return boltGet(tx.Bucket(boltBucketHooks), []byte(id), &h)
	})
	return h, err
}

// DeleteWebhook removes an endpoint of account and its delivery records.
func (l *Local) DeleteWebhook(ctx context.Context, account, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.update("delete webhook", func(tx *bolt.Tx) error {
		var h Webhook
		if err := boltGet(tx.Bucket(boltBucketHooks), []byte(id), &h); err != nil {
			return err
		}
		if h.Account != account {
			return fmt.Errorf("webhook %s of another account: %w", id, ErrNotFound)
		}
		if err := tx.Bucket(boltBucketHooks).Delete([]byte(id)); err != nil {
			return err
		}
		if tx.Bucket(boltBucketHookLog).Bucket([]byte(id)) != nil {
			return tx.Bucket(boltBucketHookLog).DeleteBucket([]byte(id))
		}
		return nil
	})
}

// EnqueueWebhookEvent queues ev for each subscribed endpoint of account in
// one transaction. An account without one costs a read, not an fsync.
func (l *Local) EnqueueWebhookEvent(ctx context.Context, account string, ev WebhookEvent) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	subscribed := func(tx *bolt.Tx) ([]Webhook, error) {
		hooks, err := boltHooks(tx, account)
		return slices.DeleteFunc(hooks, func(h Webhook) bool { return !h.subscribed(ev.Type) }), err
	}
	var n int
	err := l.view("enqueue webhook event", func(tx *bolt.Tx) error {
		hooks, err := subscribed(tx)
		n = len(hooks)
		return err
	})
	if err != nil || n == 0 {
		return 0, err
	}
	err = l.update("enqueue webhook event", func(tx *bolt.Tx) error {
		hooks, err := subscribed(tx)
		if err != nil {
			return err
		}
		now := time.Now()
		for _, h := range hooks {
			if err := boltPutHookJob(tx, now, localHookRecord{HookID: h.ID, Event: ev, Since: now}); err != nil {
				return err
			}
			if ev.Verify {
				continue // recorded once verified
			}
			if err := boltPutHookLog(tx, pendingRecord(h.ID, ev, now)); err != nil {
				return err
			}
		}
		n = len(hooks)
		return nil
	})
	if err != nil {
		return 0, err
	}
	l.hooks.wake()
	return n, nil
}

// boltPutHookJob queues rec, ready at ready.
func boltPutHookJob(tx *bolt.Tx, ready time.Time, rec localHookRecord) error {
	b := tx.Bucket(boltBucketHookQueue)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	return boltPut(b, append(boltBE64(boltUnixNano(ready)), boltBE64(seq)...), rec)
}

// boltPutHookLog writes d as the latest state of its delivery, unless the
// endpoint is gone; past hookLogSlack more, only the newest
// MaxWebhookDeliveries records are kept.
func boltPutHookLog(tx *bolt.Tx, d WebhookDelivery) error {
	if tx.Bucket(boltBucketHooks).Get([]byte(d.HookID)) == nil {
		return nil
	}
	b, err := tx.Bucket(boltBucketHookLog).CreateBucketIfNotExists([]byte(d.HookID))
	if err != nil {
		return err
	}
	fresh := b.Get([]byte(d.EventID)) == nil
	if err := boltPut(b, []byte(d.EventID), d); err != nil || !fresh {
		return err
	}
	if !hookLogTrimDue(b.Stats().KeyN) {
		return nil
	}
	all, err := boltList[WebhookDelivery](b)
	if err != nil {
		return err
	}
	for _, id := range overflowDeliveries(all, MaxWebhookDeliveries) {
		if err := b.Delete([]byte(id)); err != nil {
			return err
		}
	}
	return nil
}

// ClaimWebhook hands out the oldest ready delivery job that is unclaimed or
// whose claim is older than reclaimAfter. Claims live in memory: after a
// restart (a node killed mid-delivery) every job is ready again.
func (l *Local) ClaimWebhook(ctx context.Context, consumer string, block, reclaimAfter time.Duration) (WebhookJob, error) {
	id, raw, err := l.claim(ctx, l.hooks, consumer, block, reclaimAfter)
	if err != nil {
		return WebhookJob{}, err
	}
	var rec localHookRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return WebhookJob{}, fmt.Errorf("sessionstore: local claim webhook: decode: %w", err)
	}
	return WebhookJob{ID: id, HookID: rec.HookID, Event: rec.Event, Attempts: rec.Attempts, Since: rec.Since}, nil
}

// SettleWebhook removes the job, records out, and requeues it when out is
// a retry or pending, in one transaction; a job already gone is left alone.
func (l *Local) SettleWebhook(ctx context.Context, job WebhookJob, out WebhookOutcome) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := l.finish("settle webhook", l.hooks, job.ID, func(tx *bolt.Tx, raw []byte) error {
		var rec localHookRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return fmt.Errorf("decode webhook job: %w", err)
		}
		now := time.Now()
		if d, ok := settleRecord(job, out, now); ok {
			if err := boltPutHookLog(tx, d); err != nil {
				return err
			}
		}
		switch out.State {
		case DeliveryRetrying:
			rec.Attempts++
		case DeliveryPending:
			rec.Event = job.Event // verified: no longer to verify
		default:
			return nil
		}
		return boltPutHookJob(tx, now.Add(out.RetryIn), rec)
	})
	if err != nil {
		return err
	}
	if out.requeues() {
		l.hooks.wake() // a waiter recomputes how long to sleep
	}
	return nil
}

// WebhookDeliveries lists an endpoint's delivery records, newest first.
func (l *Local) WebhookDeliveries(ctx context.Context, hookID string) ([]WebhookDelivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []WebhookDelivery
	err := l.view("webhook deliveries", func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBucketHookLog).Bucket([]byte(hookID))
		if b == nil {
			return nil
		}
		var err error
		out, err = boltList[WebhookDelivery](b)
		return err
	})
	return newestDeliveries(out, MaxWebhookDeliveries), err
}

// AssetRecord returns an asset as stored, a deleted one too.
func (l *Local) AssetRecord(ctx context.Context, id string) (Asset, error) {
	if err := ctx.Err(); err != nil {
		return Asset{}, err
	}
	var a Asset
	err := l.view("asset record", func(tx *bolt.Tx) error {
		return boltGet(tx.Bucket(boltBucketAssets), []byte(id), &a)
	})
	return a, err
}
