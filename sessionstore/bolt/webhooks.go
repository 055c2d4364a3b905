package bolt

import (
	"context"
	"fmt"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/roughy/ingest/sessionstore"
)

// localHookRecord is a queued webhook delivery in boltBucketHookQueue (keys
// as in jobQueue); WebhookJob.ID is the hex of its key, new on each retry.
type localHookRecord struct {
	HookID   string
	Event    sessionstore.WebhookEvent
	Attempts int
	Since    time.Time
}

// CreateWebhook stores an endpoint; ErrExists if its id is taken.
func (l *Store) CreateWebhook(ctx context.Context, h sessionstore.Webhook) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.update("create webhook", func(tx *bbolt.Tx) error {
		b := tx.Bucket(boltBucketHooks)
		if b.Get([]byte(h.ID)) != nil {
			return fmt.Errorf("webhook %s: %w", h.ID, sessionstore.ErrExists)
		}
		return boltPut(b, []byte(h.ID), h)
	})
}

// Webhooks lists an account's endpoints, oldest first.
func (l *Store) Webhooks(ctx context.Context, account string) ([]sessionstore.Webhook, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []sessionstore.Webhook
	err := l.view("webhooks", func(tx *bbolt.Tx) error {
		var err error
		out, err = boltHooks(tx, account)
		return err
	})
	return out, err
}

// boltHooks lists account's endpoints, oldest first.
func boltHooks(tx *bbolt.Tx, account string) ([]sessionstore.Webhook, error) {
	all, err := boltList[sessionstore.Webhook](tx.Bucket(boltBucketHooks))
	if err != nil {
		return nil, err
	}
	out := slices.DeleteFunc(all, func(h sessionstore.Webhook) bool { return h.Account != account })
	slices.SortStableFunc(out, func(a, b sessionstore.Webhook) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// Webhook returns one endpoint.
func (l *Store) Webhook(ctx context.Context, id string) (sessionstore.Webhook, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.Webhook{}, err
	}
	var h sessionstore.Webhook
	err := l.view("webhook", func(tx *bbolt.Tx) error {
		return boltGet(tx.Bucket(boltBucketHooks), []byte(id), &h)
	})
	return h, err
}

// DeleteWebhook removes an endpoint of account and its delivery records.
func (l *Store) DeleteWebhook(ctx context.Context, account, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.update("delete webhook", func(tx *bbolt.Tx) error {
		var h sessionstore.Webhook
		if err := boltGet(tx.Bucket(boltBucketHooks), []byte(id), &h); err != nil {
			return err
		}
		if h.Account != account {
			return fmt.Errorf("webhook %s of another account: %w", id, sessionstore.ErrNotFound)
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
func (l *Store) EnqueueWebhookEvent(ctx context.Context, account string, ev sessionstore.WebhookEvent) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	subscribed := func(tx *bbolt.Tx) ([]sessionstore.Webhook, error) {
		hooks, err := boltHooks(tx, account)
		return slices.DeleteFunc(hooks, func(h sessionstore.Webhook) bool { return !h.Subscribed(ev.Type) }), err
	}
	var n int
	err := l.view("enqueue webhook event", func(tx *bbolt.Tx) error {
		hooks, err := subscribed(tx)
		n = len(hooks)
		return err
	})
	if err != nil || n == 0 {
		return 0, err
	}
	err = l.update("enqueue webhook event", func(tx *bbolt.Tx) error {
		var err error
		n, err = l.enqueueTx(tx, account, ev)
		return err
	})
	if err != nil {
		return 0, err
	}
	l.hooks.wake()
	return n, nil
}

// enqueueTx is EnqueueWebhookEvent inside tx: it queues ev for each of
// account's endpoints subscribed to its type and answers how many. The
// caller wakes the deliverers once tx is committed.
func (l *Store) enqueueTx(tx *bbolt.Tx, account string, ev sessionstore.WebhookEvent) (int, error) {
	hooks, err := boltHooks(tx, account)
	if err != nil {
		return 0, err
	}
	hooks = slices.DeleteFunc(hooks, func(h sessionstore.Webhook) bool { return !h.Subscribed(ev.Type) })
	now := time.Now()
	for _, h := range hooks {
		if err := l.hooks.put(tx, now, localHookRecord{HookID: h.ID, Event: ev, Since: now}); err != nil {
			return 0, err
		}
		if ev.Verify {
			continue // recorded once verified
		}
		if err := boltPutHookLog(tx, sessionstore.PendingRecord(h.ID, ev, now)); err != nil {
			return 0, err
		}
	}
	return len(hooks), nil
}

// boltPutHookLog writes d as the latest state of its delivery, unless the
// endpoint is gone; past HookLogSlack more, only the newest
// MaxWebhookDeliveries records are kept.
func boltPutHookLog(tx *bbolt.Tx, d sessionstore.WebhookDelivery) error {
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
	// The bucket's sequence counts its records, so that a new one costs no
	// walk of the bucket. A log written before it did has sequence 0 and is
	// counted once (with a cursor: Stats misses this transaction's writes).
	n := b.Sequence() + 1
	if n == 1 {
		n = 0
		c := b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
	}
	if sessionstore.HookLogTrimDue(int(n)) {
		all, err := boltList[sessionstore.WebhookDelivery](b)
		if err != nil {
			return err
		}
		drop := sessionstore.OverflowDeliveries(all, sessionstore.MaxWebhookDeliveries)
		for _, id := range drop {
			if err := b.Delete([]byte(id)); err != nil {
				return err
			}
		}
		n = uint64(len(all) - len(drop))
	}
	return b.SetSequence(n)
}

// ClaimWebhook hands out the oldest ready delivery job that is unclaimed or
// whose claim is older than reclaimAfter. Claims live in memory: after a
// restart (a node killed mid-delivery) every job is ready again.
func (l *Store) ClaimWebhook(ctx context.Context, consumer string, block, reclaimAfter time.Duration) (sessionstore.WebhookJob, error) {
	id, rec, err := claimAs[localHookRecord](ctx, l.hooks, consumer, block, reclaimAfter)
	if err != nil {
		return sessionstore.WebhookJob{}, err
	}
	return sessionstore.WebhookJob{ID: id, HookID: rec.HookID, Event: rec.Event, Attempts: rec.Attempts, Since: rec.Since}, nil
}

// SettleWebhook removes the job, records out, and requeues it when out is
// a retry or pending, in one transaction; a job already gone is left alone.
func (l *Store) SettleWebhook(ctx context.Context, job sessionstore.WebhookJob, out sessionstore.WebhookOutcome) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := finishAs(l.hooks, "settle webhook", job.ID, func(tx *bbolt.Tx, rec localHookRecord) error {
		now := time.Now()
		if d, ok := sessionstore.SettleRecord(job, out, now); ok {
			if err := boltPutHookLog(tx, d); err != nil {
				return err
			}
		}
		switch out.State {
		case sessionstore.DeliveryRetrying:
			rec.Attempts++
		case sessionstore.DeliveryPending:
			rec.Event = job.Event // verified: no longer to verify
		default:
			return nil
		}
		return l.hooks.put(tx, now.Add(out.RetryIn), rec)
	})
	if err != nil {
		return err
	}
	if out.Requeues() {
		l.hooks.wake() // a waiter recomputes how long to sleep
	}
	return nil
}

// WebhookDeliveries lists an endpoint's delivery records, newest first.
func (l *Store) WebhookDeliveries(ctx context.Context, hookID string) ([]sessionstore.WebhookDelivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []sessionstore.WebhookDelivery
	err := l.view("webhook deliveries", func(tx *bbolt.Tx) error {
		b := tx.Bucket(boltBucketHookLog).Bucket([]byte(hookID))
		if b == nil {
			return nil
		}
		var err error
		out, err = boltList[sessionstore.WebhookDelivery](b)
		return err
	})
	return sessionstore.NewestDeliveries(out, sessionstore.MaxWebhookDeliveries), err
}

// AssetRecord returns an asset as stored, a deleted one too.
func (l *Store) AssetRecord(ctx context.Context, id string) (sessionstore.Asset, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.Asset{}, err
	}
	var a sessionstore.Asset
	err := l.view("asset record", func(tx *bbolt.Tx) error {
		return boltGet(tx.Bucket(boltBucketAssets), []byte(id), &a)
	})
	return a, err
}
