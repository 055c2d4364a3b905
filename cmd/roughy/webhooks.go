package main

import (
	"context"
	"flag"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/roughy/ingest/probe"
	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/webhook"
)

// webhookFlags tune serve's webhook deliverer. The retry
// schedule is a flag so that tests can run a day of retries in seconds.
type webhookFlags struct {
	workers      *int
	timeout      *time.Duration
	retryBase    *time.Duration
	retryMax     *time.Duration
	retryFor     *time.Duration
	reclaimAfter *time.Duration
	verifyFor    *time.Duration
	allowed      *networksFlag
}

// networksFlag is a comma list of CIDRs, checked when set.
type networksFlag struct {
	text string
	nets []netip.Prefix
}

func (n *networksFlag) String() string { return n.text }

func (n *networksFlag) Set(s string) error {
	nets, err := webhook.ParseNetworks(s)
	if err != nil {
		return err
	}
	n.text, n.nets = s, nets
	return nil
}

// targets are the receivers webhooks may be registered for and delivered
// to.
func (w *webhookFlags) targets() webhook.Targets {
	return webhook.Targets{Allowed: w.allowed.nets}
}

func addWebhookFlags(f *flag.FlagSet) *webhookFlags {
	w := &webhookFlags{
		workers:   f.Int("webhook-workers", 4, "webhook deliveries in flight at once in this process (0: none)"),
		timeout:   f.Duration("webhook-timeout", 10*time.Second, "limit of one webhook delivery (a receiver slower than this is retried)"),
		retryBase: f.Duration("webhook-retry-base", 30*time.Second, "first webhook retry delay, doubled after each failure"),
		retryMax:  f.Duration("webhook-retry-max", time.Hour, "longest delay between two webhook retries"),
		retryFor:  f.Duration("webhook-retry-for", 24*time.Hour, "how long after its event a delivery is retried before it is dead-lettered"),
		reclaimAfter: f.Duration("webhook-reclaim-after", 0,
			"hand a delivery claimed by a dead node to another after this (default --webhook-timeout + 10s)"),
		verifyFor: f.Duration("webhook-verify-for", 2*time.Minute,
			"how long after its event a change not seen yet may still happen; past it the event is dropped (events are queued before their change)"),
		allowed: &networksFlag{},
	}
	f.Var(w.allowed, "webhook-allowed-networks",
		"non-public networks webhook receivers may be in, comma separated CIDRs, e.g. 10.1.0.0/16 (default none: loopback, private, link-local … refused)")
	return w
}

// start runs the deliverer until ctx ends; wg tracks it.
func (w *webhookFlags) start(ctx context.Context, wg *sync.WaitGroup, store webhook.Store, render webhook.RenderFunc,
	verify webhook.VerifyFunc, log *slog.Logger) {
	if *w.workers <= 0 {
		return
	}
	d := webhook.New(webhook.Config{
		Workers: *w.workers, Timeout: *w.timeout, BaseDelay: *w.retryBase, MaxDelay: *w.retryMax,
		MaxAge: *w.retryFor, ReclaimAfter: *w.reclaimAfter, Render: render, Verify: verify, VerifyFor: *w.verifyFor,
		Targets: w.targets(), Logger: log,
	}, store)
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
