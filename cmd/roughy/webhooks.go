package main

import (
	"context"
	"flag"
	"log/slog"
	"sync"

	"github.com/roughy/ingest/probe"
	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/webhook"
)

// webhookFlags tune serve's webhook deliverer: cfg is bound to the
// --webhook-* flags. The retry schedule is a flag so that tests can run a
// day of retries in seconds.
type webhookFlags struct {
	cfg webhook.Config
}

// networksFlag binds a comma list of CIDRs to webhook.Targets, checked
// when set.
func networksFlag(t *webhook.Targets) prefixesFlag {
	return prefixesFlag{p: &t.Allowed, parse: webhook.ParseNetworks}
}

func addWebhookFlags(f *flag.FlagSet) *webhookFlags {
	w := &webhookFlags{cfg: webhook.DefaultConfig()}
	c := &w.cfg
	f.IntVar(&c.Workers, "webhook-workers", c.Workers, "webhook deliveries in flight at once in this process (0: none)")
	f.DurationVar(&c.Timeout, "webhook-timeout", c.Timeout, "limit of one webhook delivery (a receiver slower than this is retried)")
	f.DurationVar(&c.BaseDelay, "webhook-retry-base", c.BaseDelay, "first webhook retry delay, doubled after each failure")
	f.DurationVar(&c.MaxDelay, "webhook-retry-max", c.MaxDelay, "longest delay between two webhook retries")
	f.DurationVar(&c.MaxAge, "webhook-retry-for", c.MaxAge, "how long after its event a delivery is retried before it is dead-lettered")
	f.DurationVar(&c.ReclaimAfter, "webhook-reclaim-after", c.ReclaimAfter,
		"hand a delivery claimed by a dead node to another after this (0: --webhook-timeout + 10s)")
	f.DurationVar(&c.VerifyFor, "webhook-verify-for", c.VerifyFor,
		"how long after its event a change not seen yet may still happen; past it the event is dropped (events are queued before their change)")
	f.Var(networksFlag(&c.Targets), "webhook-allowed-networks",
		"non-public networks webhook receivers may be in, comma separated CIDRs, e.g. 10.1.0.0/16 (default none: loopback, private, link-local … refused)")
	return w
}

// start runs the deliverer until ctx ends; wg tracks it.
func (w *webhookFlags) start(ctx context.Context, wg *sync.WaitGroup, store webhook.Store, render webhook.RenderFunc,
	verify webhook.VerifyFunc, log *slog.Logger) {
	if w.cfg.Workers <= 0 {
		return
	}
	cfg := w.cfg
	cfg.Render, cfg.Verify, cfg.Logger = render, verify, log
	d := webhook.New(cfg, store)
	wg.Go(func() { d.Run(ctx) })
}

// probedEvents makes probe workers emit asset.probed to the account's
// webhooks, when store can queue them.
// The event is queued before the result is recorded, to be verified
// (proxy.Server.WebhookVerify): a crash in between cannot lose it.
func probedEvents(store probe.Store) func(context.Context, sessionstore.Asset, string) error {
	e, ok := store.(webhook.Enqueuer)
	if !ok {
		return nil
	}
	return func(ctx context.Context, a sessionstore.Asset, failure string) error {
		return webhook.EmitBefore(ctx, e, sessionstore.EventAssetProbed, a, failure)
	}
}
