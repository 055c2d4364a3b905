// Package webhook delivers an account's events to its webhook endpoints:
// it takes delivery jobs from the session store's durable
// queue, POSTs each event signed with the endpoint's secret, and settles
// the job as delivered, to retry with exponential backoff, or dead. Like
// probe/, it knows the store only through the few methods it calls.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/upload"
	"github.com/roughy/ingest/worker"
)

// SignatureHeader carries a delivery's signature: "t=<unix seconds>,v1=<hex
// HMAC-SHA256 of "<t>.<body>" keyed with the endpoint's secret>".
const SignatureHeader = "Roughy-Signature"

// Headers that name the event, for receivers that route before parsing.
const (
	EventIDHeader   = "Roughy-Event-Id"
	EventTypeHeader = "Roughy-Event-Type"
)

// Events are queued by the upload service (upload.Emit, upload.EmitBefore:
// a change's event is written to the store before or with the change);
// this package delivers them. The names below are the queueing's, for
// the workers (the probe's asset.probed) that queue events too.

// Enqueuer is what Emit needs of the session store.
type Enqueuer = upload.Enqueuer

// NewEvent returns an event of type typ about a (upload.NewEvent).
func NewEvent(typ string, a sessionstore.Asset, failure string) sessionstore.WebhookEvent {
	return upload.NewEvent(typ, a, failure)
}

// EventID is the id of the event of type typ about an asset
// (upload.EventID: derived from the change, so one change told twice
// carries one id).
func EventID(account, typ, assetID string, failed bool) string {
	return upload.EventID(account, typ, assetID, failed)
}

// Emit queues an event of type typ about a (upload.Emit).
func Emit(ctx context.Context, st Enqueuer, typ string, a sessionstore.Asset, failure string) error {
	return upload.Emit(ctx, st, typ, a, failure)
}

// EmitBefore queues an event BEFORE the state change it reports, to be
// verified at delivery (upload.EmitBefore, Config.Verify).
func EmitBefore(ctx context.Context, st Enqueuer, typ string, a sessionstore.Asset, failure string) error {
	return upload.EmitBefore(ctx, st, typ, a, failure)
}

// Sign returns the SignatureHeader value of body sent at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// Payload is a delivery's JSON body.
type Payload struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	// Time is when the event happened (RFC 3339), not when it was sent.
	Time string `json:"time"`
	// Asset is the asset as GET /api/v1/assets/{id} shows it, as it stood
	// when the event's change was verified (normally milliseconds after
	// Time; asset.deleted, upload.expired: just before the change).
	Asset any `json:"asset"`
	// Error is a failed probe's reason (asset.probed only).
	Error string `json:"error,omitempty"`
}

// Store is what a Deliverer needs of the session store.
// bolt.Store and redis.Store (sessionstore/bolt, sessionstore/redis)
// implement it.
type Store interface {
	ClaimWebhook(ctx context.Context, consumer string, block, reclaimAfter time.Duration) (sessionstore.WebhookJob, error)
	SettleWebhook(ctx context.Context, job sessionstore.WebhookJob, out sessionstore.WebhookOutcome) error
	Webhook(ctx context.Context, id string) (sessionstore.Webhook, error)
}

// RenderFunc turns an event's asset into the JSON shape of GET
// /api/v1/assets/{id} (the proxy's, with a fresh download URL).
type RenderFunc func(ctx context.Context, ev sessionstore.WebhookEvent) any

// VerifyFunc checks that the state change of an event queued before it
// (EmitBefore) happened, and answers the asset as it stands after it (the
// event's asset from then on).
type VerifyFunc func(ctx context.Context, ev sessionstore.WebhookEvent) (sessionstore.Asset, bool, error)

// Config tunes a Deliverer. Start from DefaultConfig; a zero value takes
// the default shown.
type Config struct {
	// Workers is the number of deliveries in flight at once (4).
	Workers int
	// Timeout bounds one delivery: connect, send, and the receiver's
	// answer (10s). A timeout counts as a failure.
	Timeout time.Duration
	// BaseDelay is the first retry delay, doubled on each failure (30s),
	// up to MaxDelay (1h).
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// MaxAge is how long after the event deliveries are retried (24h);
	// a failure past it is dead-lettered.
	MaxAge time.Duration
	// Block is how long one claim waits for a job (2s).
	Block time.Duration
	// ReclaimAfter hands out again a job whose consumer did not settle it
	// (a node killed mid-delivery): Timeout + 10s, so a live consumer's
	// delivery has always ended first and no event is in flight twice.
	ReclaimAfter time.Duration
	// Verify checks events queued before their change (nil: every such
	// event counts as happened).
	Verify VerifyFunc
	// VerifyFor is how long after the event a change not seen yet may
	// still happen (2m): the request making it is still running. Past it
	// the event is dropped. It must outlast the longest step between the
	// queueing and the change (a store commit, a storage delete).
	VerifyFor time.Duration
	// VerifyDelay is the longest an event whose change is not seen yet
	// waits before it is checked again (1s); a young event is checked
	// again after its age.
	VerifyDelay time.Duration
	// Consumer prefixes the workers' consumer names (Consumer()).
	Consumer string
	// Targets are the receivers deliveries may reach: only public
	// addresses, unless allowed. Checked on each delivery's URL and, by
	// the default Client's dialer, on every address it connects to.
	Targets Targets
	// EndpointConcurrency bounds the deliveries in flight to one
	// endpoint (an account's scheme://host:port) on this node (2), and
	// AccountConcurrency those of one account (3/4 of Workers, at least
	// 1), so that one account's slow or dead receivers leave workers for
	// the others.
	EndpointConcurrency int
	AccountConcurrency  int
	// PauseAfter failures in a row pause an endpoint (3): its jobs wait,
	// without an attempt, for the retry delay of the failures past it,
	// then one attempt tells whether it recovered.
	PauseAfter int
	Render     RenderFunc
	// Client sends deliveries (default: one that follows no redirect,
	// uses no proxy and dials only Targets).
	Client *http.Client
	Logger *slog.Logger
}

// DefaultConfig returns the deliverer `roughy serve` runs: its
// --webhook-* flags' defaults are these values. ReclaimAfter and
// AccountConcurrency are left 0: New derives them from Timeout and
// Workers.
func DefaultConfig() Config {
	return Config{
		Workers:             4,
		Timeout:             10 * time.Second,
		BaseDelay:           30 * time.Second,
		MaxDelay:            time.Hour,
		MaxAge:              24 * time.Hour,
		Block:               2 * time.Second,
		VerifyFor:           2 * time.Minute,
		VerifyDelay:         time.Second,
		EndpointConcurrency: 2,
		PauseAfter:          3,
	}
}

// withDefaults fills the settings that are 0 or negative from
// DefaultConfig: none of them can be off (a process that delivers nothing
// runs no Deliverer).
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	for _, f := range []struct{ v, def *int }{
		{&c.Workers, &d.Workers}, {&c.EndpointConcurrency, &d.EndpointConcurrency}, {&c.PauseAfter, &d.PauseAfter},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	for _, f := range []struct{ v, def *time.Duration }{
		{&c.Timeout, &d.Timeout}, {&c.BaseDelay, &d.BaseDelay}, {&c.MaxDelay, &d.MaxDelay}, {&c.MaxAge, &d.MaxAge},
		{&c.Block, &d.Block}, {&c.VerifyFor, &d.VerifyFor}, {&c.VerifyDelay, &d.VerifyDelay},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	if c.ReclaimAfter <= c.Timeout {
		c.ReclaimAfter = c.Timeout + 10*time.Second
	}
	if c.Verify == nil {
		c.Verify = func(_ context.Context, ev sessionstore.WebhookEvent) (sessionstore.Asset, bool, error) {
			return ev.Asset, true, nil
		}
	}
	if c.Consumer == "" {
		c.Consumer = Consumer()
	}
	if c.Render == nil {
		c.Render = func(_ context.Context, ev sessionstore.WebhookEvent) any { return map[string]string{"id": ev.Asset.ID} }
	}
	if c.AccountConcurrency <= 0 {
		c.AccountConcurrency = max(1, c.Workers*3/4)
	}
	if c.Client == nil {
		c.Client = &http.Client{
			Transport: &http.Transport{
				// No proxy: the dialer would check the proxy's address,
				// not the receiver's.
				Proxy:               nil,
				DialContext:         c.Targets.Dialer().DialContext,
				ForceAttemptHTTP2:   true,
				MaxIdleConns:        100,
				IdleConnTimeout:     90 * time.Second,
				TLSHandshakeTimeout: 10 * time.Second,
			},
			// A redirect is an answer that is not 2xx: retried, not followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Consumer returns a consumer name unique to this process, so that a
// restarted node's old claims are reclaimed, not resumed.
func Consumer() string {
	host, err := os.Hostname()
	if err != nil {
		host = "roughy"
	}
	return "webhook-" + host + "-" + strconv.Itoa(os.Getpid())
}

// Deliverer runs a bounded pool of delivery workers.
type Deliverer struct {
	cfg   Config
	store Store
	turns *turns
	retry worker.Retry
}

// New returns a deliverer over store.
func New(cfg Config, store Store) *Deliverer {
	d := &Deliverer{cfg: cfg.withDefaults(), store: store}
	d.retry = worker.Retry{Base: d.cfg.BaseDelay, Max: d.cfg.MaxDelay, MaxAge: d.cfg.MaxAge}
	d.turns = newTurns(d.cfg.EndpointConcurrency, d.cfg.AccountConcurrency, d.cfg.PauseAfter, d.Delay, d.cfg.Timeout)
	return d
}

// Delay is the retry delay after a job's attempt-th failure (0-based):
// BaseDelay·2^attempt, capped at MaxDelay.
func (d *Deliverer) Delay(attempt int) time.Duration { return d.retry.Delay(attempt) }

// Run delivers until ctx ends, with Workers deliveries at most in flight,
// then returns once every worker stopped. A delivery cut short by ctx is
// left claimed; the queue hands it out again after ReclaimAfter.
func (d *Deliverer) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range d.cfg.Workers {
		wg.Go(func() { d.work(ctx, d.cfg.Consumer+"-"+strconv.Itoa(i)) })
	}
	wg.Wait()
}

func (d *Deliverer) work(ctx context.Context, consumer string) {
	loop := worker.Loop[sessionstore.WebhookJob]{Name: "webhook", Consumer: consumer,
		Block: d.cfg.Block, ReclaimAfter: d.cfg.ReclaimAfter, Claim: d.store.ClaimWebhook, Handle: d.Handle,
		Unsettled: "webhook: delivery not settled",
		Attrs: func(j sessionstore.WebhookJob) []any {
			return []any{"event_id", j.Event.ID, "webhook_id", j.HookID}
		},
		Logger: d.cfg.Logger.With("consumer", consumer)}
	loop.Run(ctx)
}

// Handle delivers one claimed job and settles it. It returns an error only
// when the job could not be settled (it stays claimed and is reclaimed).
func (d *Deliverer) Handle(ctx context.Context, job sessionstore.WebhookJob) error {
	log := d.cfg.Logger.With("event_id", job.Event.ID, "event", job.Event.Type, "webhook_id", job.HookID, "attempts", job.Attempts)
	hook, err := d.store.Webhook(ctx, job.HookID)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return d.settle(ctx, job, sessionstore.WebhookOutcome{State: sessionstore.DeliveryDead, Error: ClassDeleted})
	}
	if err != nil {
		return fmt.Errorf("webhook: load %s: %w", job.HookID, err)
	}
	if job.Event.Verify {
		return d.verify(ctx, job)
	}
	if err := d.cfg.Targets.CheckURL(hook.URL); err != nil {
		// Registered before the address was refused, or by a store
		// written to directly: never sent.
		return d.failed(ctx, log, job, 0, ClassBlocked, err)
	}
	done, w, ok := d.turns.take(hook.Account, endpoint(hook), time.Now())
	if !ok {
		return d.postpone(ctx, log, job, w)
	}
	status, err := d.post(ctx, hook, job.Event)
	class := Class(status, err)
	done(attemptOutcome{ended: time.Now(), failed: err != nil, skip: err != nil && ctx.Err() != nil, status: status, class: class})
	if err != nil && ctx.Err() != nil {
		return ctx.Err() // shutting down: leave the job claimed
	}
	if err == nil {
		log.Info("webhook: delivered", "status", status)
		return d.settle(ctx, job, sessionstore.WebhookOutcome{State: sessionstore.DeliveryDelivered, Status: status})
	}
	return d.failed(ctx, log, job, status, class, err)
}

// failed settles a failed attempt: retried after the backoff delay, or
// dead past MaxAge. The record shows only the class of the failure (err,
// with its addresses, goes to the log).
func (d *Deliverer) failed(ctx context.Context, log *slog.Logger, job sessionstore.WebhookJob, status int, class string, err error) error {
	delay, dead := d.retry.After(job.Attempts, job.Since, time.Now())
	out := sessionstore.WebhookOutcome{State: sessionstore.DeliveryRetrying, Status: status, Error: class,
		RetryIn: delay}
	if dead {
		out.State = sessionstore.DeliveryDead
		log.Warn("webhook: dead-lettered", "reason", err, "class", class, "attempts", job.Attempts+1,
			"age", time.Since(job.Since).Round(time.Second))
	} else {
		log.Info("webhook: failed, will retry", "reason", err, "class", class, "retry_in", out.RetryIn)
	}
	return d.settle(ctx, job, out)
}

// postpone hands a job back to the queue, without an attempt, when its
// endpoint or account has no turn free (turns). A job of an endpoint
// paused for failing that would wait past MaxAge is dead: its endpoint's
// last failure stands for its own.
func (d *Deliverer) postpone(ctx context.Context, log *slog.Logger, job sessionstore.WebhookJob, w wait) error {
	if w.Paused && d.retry.Expired(job.Since, w.RetryIn, time.Now()) {
		log.Warn("webhook: dead-lettered: its endpoint keeps failing", "class", w.Class)
		return d.settle(ctx, job, sessionstore.WebhookOutcome{State: sessionstore.DeliveryDead, Status: w.Status, Error: w.Class})
	}
	// A job tried before stays "retrying" with its endpoint's last
	// failure, most likely its own.
	out := sessionstore.WebhookOutcome{State: sessionstore.DeliveryPending, RetryIn: w.RetryIn, Status: w.Status, Error: w.Class}
	log.Debug("webhook: postponed", "retry_in", w.RetryIn, "endpoint_failing", w.Paused)
	return d.settle(ctx, job, out)
}

// endpoint keys the turns of a webhook: its account's receiver, as
// scheme://host:port. Accounts never share one: another account's
// failing path on a shared host does not pause this one's.
func endpoint(h sessionstore.Webhook) string {
	u, err := url.Parse(h.URL)
	if err != nil {
		return h.Account + " " + h.URL
	}
	return h.Account + " " + u.Scheme + "://" + strings.ToLower(u.Host)
}

// verify settles a job whose event was queued before its change: if the
// change happened, the job is requeued at once with the event marked
// verified (so that a later retry, or a reclaim after a crash, never
// checks again a state that may have moved on since), and delivered on
// its next claim; if not yet, it is checked again after at most
// VerifyDelay;
// VerifyFor after the event it is dropped: the change never happened.
func (d *Deliverer) verify(ctx context.Context, job sessionstore.WebhookJob) error {
	log := d.cfg.Logger.With("event_id", job.Event.ID, "event", job.Event.Type, "webhook_id", job.HookID)
	a, ok, err := d.cfg.Verify(ctx, job.Event)
	switch {
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		// Not known whether it happened: check again, never drop.
		log.Warn("webhook: cannot verify event, will check again", "err", err)
		return d.settle(ctx, job, sessionstore.WebhookOutcome{State: sessionstore.DeliveryPending, RetryIn: d.cfg.VerifyDelay})
	case ok:
		job.Event.Verify, job.Event.Asset = false, a
		return d.settle(ctx, job, sessionstore.WebhookOutcome{State: sessionstore.DeliveryPending})
	case time.Since(job.Event.Time) < d.cfg.VerifyFor:
		// Mostly the change is a few milliseconds behind its event: check
		// again soon, then less often, up to VerifyDelay apart.
		retry := min(max(time.Since(job.Event.Time), 10*time.Millisecond), d.cfg.VerifyDelay)
		return d.settle(ctx, job, sessionstore.WebhookOutcome{State: sessionstore.DeliveryPending, RetryIn: retry})
	}
	log.Info("webhook: event dropped: its change never happened", "asset_id", job.Event.Asset.ID)
	return d.settle(ctx, job, sessionstore.WebhookOutcome{State: sessionstore.DeliveryDropped})
}

// settle records out. It goes on even if ctx ends right after the receiver
// answered: an answer we have is worth recording.
func (d *Deliverer) settle(ctx context.Context, job sessionstore.WebhookJob, out sessionstore.WebhookOutcome) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := d.store.SettleWebhook(ctx, job, out); err != nil {
		return fmt.Errorf("webhook: settle %s: %w", job.Event.ID, err)
	}
	return nil
}

// post sends ev to hook and answers the receiver's status; an error for
// anything but a 2xx answer within Timeout.
func (d *Deliverer) post(ctx context.Context, hook sessionstore.Webhook, ev sessionstore.WebhookEvent) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	body, err := json.Marshal(Payload{ID: ev.ID, Type: ev.Type, Time: ev.Time.UTC().Format(time.RFC3339Nano),
		Asset: d.cfg.Render(ctx, ev), Error: ev.Error})
	if err != nil {
		return 0, fmt.Errorf("encode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.URL, strings.NewReader(string(body)))
	if err != nil {
		return 0, fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Roughy-Webhooks/1")
	req.Header.Set(EventIDHeader, ev.ID)
	req.Header.Set(EventTypeHeader, ev.Type)
	req.Header.Set(SignatureHeader, Sign(hook.Secret, time.Now(), body))
	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("post: %w", err)
	}
	// Drain a little so the connection can be reused; the body is not
	// ours to read further (a failed drain only costs the reuse).
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, &StatusError{Status: resp.StatusCode}
	}
	return resp.StatusCode, nil
}
