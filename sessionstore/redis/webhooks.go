package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roughy/ingest/sessionstore"
)

// Webhook keys. They all carry the {webhook} tag, so on Cluster every
// script and MULTI below stays in one slot.
//
//	roughy:{webhook}:hook:<id>          string: JSON Webhook
//	roughy:{webhook}:account:<account>  set: the account's webhook ids
//	roughy:{webhook}:stream             deliveries, consumer group "roughy-webhook"
//	roughy:{webhook}:delayed            ZSET of retries (JSON redisHookJob) by due time
//	roughy:{webhook}:log:<id>           hash: event id → JSON WebhookDelivery
const (
	redisHookPrefix    = "roughy:{webhook}:hook:"
	redisHookAccount   = "roughy:{webhook}:account:"
	redisHookStream    = "roughy:{webhook}:stream"
	redisHookDelayed   = "roughy:{webhook}:delayed"
	redisHookLogPrefix = "roughy:{webhook}:log:"
	redisHookGroup     = "roughy-webhook"
	// redisHookPoll is how often a blocked ClaimWebhook looks for due
	// retries and entries to reclaim.
	redisHookPoll = 250 * time.Millisecond
)

// luaHookClaim moves due webhook retries into the stream (a member is the
// entry's "job" field as it is), then reclaims as luaReclaim does.
var luaHookClaim = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 100)
for _, m in ipairs(due) do
	redis.call('XADD', KEYS[1], '*', 'job', m)
	redis.call('ZREM', KEYS[2], m)
end
` + luaReclaim)

// luaHookSettle removes a pending delivery job, records its state (unless
// its webhook is gone or the record is "") and, with a delay >= 0, schedules it again; {2}
// when the job is no longer pending. KEYS[1] stream, KEYS[2] delayed set,
// KEYS[3] log hash, KEYS[4] webhook. ARGV[1] group, [2] id, [3] event id,
// [4] record, [5] delay ms or -1, [6] member.
var luaHookSettle = goredis.NewScript(`
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return {2} end
redis.call('XDEL', KEYS[1], ARGV[2])
if ARGV[4] ~= '' and redis.call('EXISTS', KEYS[4]) == 1 then
	redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
end
local delay = tonumber(ARGV[5])
if delay >= 0 then
	local t = redis.call('TIME')
	local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
	redis.call('ZADD', KEYS[2], now + delay, ARGV[6])
end
return {1}
`)

// redisHookQueue is the webhook queue: its claims look for due retries
// every redisHookPoll while they wait.
var redisHookQueue = jobQueue{op: "webhook", stream: redisHookStream, delayed: redisHookDelayed,
	group: redisHookGroup, script: luaHookClaim, poll: redisHookPoll}

// redisHookJob is a delivery job as the stream's "job" field and the
// delayed set's member hold it. Prev (the entry it retries) keeps members
// unique.
type redisHookJob struct {
	HookID   string                    `json:"h"`
	Event    sessionstore.WebhookEvent `json:"e"`
	Attempts int                       `json:"n"`
	Since    time.Time                 `json:"s"`
	Prev     string                    `json:"p,omitempty"`
}

// CreateWebhook stores an endpoint; ErrExists if its id is taken.
func (r *Store) CreateWebhook(ctx context.Context, h sessionstore.Webhook) error {
	raw, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("sessionstore: redis: create webhook: %w", err)
	}
	ok, err := r.client.SetNX(ctx, redisHookPrefix+h.ID, raw, 0).Result()
	if err != nil {
		return redisErr("create webhook", err)
	}
	if !ok {
		return fmt.Errorf("sessionstore: redis: create webhook %s: %w", h.ID, sessionstore.ErrExists)
	}
	if err := r.client.SAdd(ctx, redisHookAccount+h.Account, h.ID).Err(); err != nil {
		return redisErr("create webhook", err)
	}
	return nil
}

// Webhooks lists an account's endpoints, oldest first.
func (r *Store) Webhooks(ctx context.Context, account string) ([]sessionstore.Webhook, error) {
	ids, err := r.client.SMembers(ctx, redisHookAccount+account).Result()
	if err != nil {
		return nil, redisErr("webhooks", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = redisHookPrefix + id
	}
	vals, err := r.client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, redisErr("webhooks", err)
	}
	var out []sessionstore.Webhook
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // deleted meanwhile
		}
		var h sessionstore.Webhook
		if err := json.Unmarshal([]byte(s), &h); err != nil {
			return nil, fmt.Errorf("sessionstore: redis: webhooks: decode: %w", err)
		}
		if h.Account == account {
			out = append(out, h)
		}
	}
	slices.SortStableFunc(out, func(a, b sessionstore.Webhook) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// Webhook returns one endpoint.
func (r *Store) Webhook(ctx context.Context, id string) (sessionstore.Webhook, error) {
	raw, err := r.client.Get(ctx, redisHookPrefix+id).Bytes()
	if err != nil {
		return sessionstore.Webhook{}, redisErr("webhook", err)
	}
	var h sessionstore.Webhook
	if err := json.Unmarshal(raw, &h); err != nil {
		return sessionstore.Webhook{}, fmt.Errorf("sessionstore: redis: webhook %s: decode: %w", id, err)
	}
	return h, nil
}

// DeleteWebhook removes an endpoint of account and its delivery records.
func (r *Store) DeleteWebhook(ctx context.Context, account, id string) error {
	h, err := r.Webhook(ctx, id)
	if err != nil {
		return err
	}
	if h.Account != account {
		return fmt.Errorf("sessionstore: redis: delete webhook %s of another account: %w", id, sessionstore.ErrNotFound)
	}
	_, err = r.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.Del(ctx, redisHookPrefix+id, redisHookLogPrefix+id)
		p.SRem(ctx, redisHookAccount+account, id)
		return nil
	})
	if err != nil {
		return redisErr("delete webhook", err)
	}
	return nil
}

// EnqueueWebhookEvent adds one stream entry per subscribed endpoint, and
// its pending record, in one MULTI. An endpoint deleted in between gets a
// job that finds it gone.
func (r *Store) EnqueueWebhookEvent(ctx context.Context, account string, ev sessionstore.WebhookEvent) (int, error) {
	hooks, err := r.Webhooks(ctx, account)
	if err != nil {
		return 0, err
	}
	hooks = slices.DeleteFunc(hooks, func(h sessionstore.Webhook) bool { return !h.Subscribed(ev.Type) })
	if len(hooks) == 0 {
		return 0, nil
	}
	now := time.Now()
	_, err = r.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for _, h := range hooks {
			job, err := json.Marshal(redisHookJob{HookID: h.ID, Event: ev, Since: now})
			if err != nil {
				return err
			}
			p.XAdd(ctx, &goredis.XAddArgs{Stream: redisHookStream, Values: []any{"job", string(job)}})
			if ev.Verify {
				continue // recorded once verified
			}
			rec, err := json.Marshal(sessionstore.PendingRecord(h.ID, ev, now))
			if err != nil {
				return err
			}
			p.HSet(ctx, redisHookLogPrefix+h.ID, ev.ID, string(rec))
		}
		return nil
	})
	if err != nil {
		return 0, redisErr("enqueue webhook event", err)
	}
	for _, h := range hooks {
		r.trimHookLog(ctx, h.ID)
	}
	return len(hooks), nil
}

// trimHookLog keeps the newest MaxWebhookDeliveries records of an
// endpoint once HookLogSlack more have come. Best effort.
func (r *Store) trimHookLog(ctx context.Context, hookID string) {
	key := redisHookLogPrefix + hookID
	n, err := r.client.HLen(ctx, key).Result()
	if err != nil || !sessionstore.HookLogTrimDue(int(n)) {
		return
	}
	all, err := r.hookLog(ctx, hookID)
	if err != nil {
		return
	}
	if over := sessionstore.OverflowDeliveries(all, sessionstore.MaxWebhookDeliveries); len(over) > 0 {
		r.client.HDel(ctx, key, over...)
	}
}

// ClaimWebhook hands out one delivery job: a due retry or an entry whose
// consumer went quiet for reclaimAfter (a node killed mid-delivery), else a
// new entry, blocking up to block.
func (r *Store) ClaimWebhook(ctx context.Context, consumer string, block, reclaimAfter time.Duration) (sessionstore.WebhookJob, error) {
	id, vals, err := redisHookQueue.claim(ctx, r, consumer, block, reclaimAfter)
	if err != nil {
		return sessionstore.WebhookJob{}, err
	}
	var j redisHookJob
	if err := json.Unmarshal([]byte(vals["job"]), &j); err != nil {
		// A corrupt entry would be reclaimed forever: drop it (a failed
		// drop is tried again when the entry is reclaimed).
		_ = redisHookQueue.ack(ctx, r, "claim webhook: drop", id)
		return sessionstore.WebhookJob{}, fmt.Errorf("sessionstore: redis: corrupt webhook job %s: %w", id, err)
	}
	return sessionstore.WebhookJob{ID: id, HookID: j.HookID, Event: j.Event, Attempts: j.Attempts, Since: j.Since}, nil
}

// SettleWebhook records the outcome and removes or reschedules the job in
// one script (the retry's due time on the Redis clock, shared by every
// node).
func (r *Store) SettleWebhook(ctx context.Context, job sessionstore.WebhookJob, out sessionstore.WebhookOutcome) error {
	rec := ""
	if d, ok := sessionstore.SettleRecord(job, out, time.Now()); ok {
		raw, err := json.Marshal(d)
		if err != nil {
			return fmt.Errorf("sessionstore: redis: settle webhook: %w", err)
		}
		rec = string(raw)
	}
	delay, member := int64(-1), ""
	if out.Requeues() {
		delay = redisMillis(out.RetryIn)
		attempts := job.Attempts
		if out.State == sessionstore.DeliveryRetrying {
			attempts++
		}
		m, err := json.Marshal(redisHookJob{HookID: job.HookID, Event: job.Event, Attempts: attempts,
			Since: job.Since, Prev: job.ID})
		if err != nil {
			return fmt.Errorf("sessionstore: redis: settle webhook: %w", err)
		}
		member = string(m)
	}
	_, err := r.runScript(ctx, "settle webhook", luaHookSettle,
		[]string{redisHookStream, redisHookDelayed, redisHookLogPrefix + job.HookID, redisHookPrefix + job.HookID},
		redisHookGroup, job.ID, job.Event.ID, rec, delay, member)
	if errors.Is(err, sessionstore.ErrNotFound) {
		r.log.Info("sessionstore: redis: settled webhook job was not pending", "job", job.ID, "event", job.Event.ID)
		return nil
	}
	return err
}

// WebhookDeliveries lists an endpoint's delivery records, newest first.
func (r *Store) WebhookDeliveries(ctx context.Context, hookID string) ([]sessionstore.WebhookDelivery, error) {
	all, err := r.hookLog(ctx, hookID)
	return sessionstore.NewestDeliveries(all, sessionstore.MaxWebhookDeliveries), err
}

// hookLog reads every delivery record of an endpoint, in no order.
func (r *Store) hookLog(ctx context.Context, hookID string) ([]sessionstore.WebhookDelivery, error) {
	m, err := r.client.HGetAll(ctx, redisHookLogPrefix+hookID).Result()
	if err != nil {
		return nil, redisErr("webhook deliveries", err)
	}
	out := make([]sessionstore.WebhookDelivery, 0, len(m))
	for _, v := range m {
		var d sessionstore.WebhookDelivery
		if err := json.NewDecoder(strings.NewReader(v)).Decode(&d); err != nil {
			return nil, fmt.Errorf("sessionstore: redis: webhook deliveries: decode: %w", err)
		}
		out = append(out, d)
	}
	return out, nil
}
