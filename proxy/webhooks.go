package proxy

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/webhook"
	"github.com/valyala/fasthttp"
)

// maxWebhookBody bounds a POST /api/v1/webhooks body.
const maxWebhookBody = 16 << 10

var (
	errWebhookNotFound = codeNotFound.with("no such webhook")
	errWebhookBody     = codeInvalidWebhook.with(
		`the body must be JSON {"url":"https://…","events":["asset.ready",…]}; events default to all of ` + strings.Join(sessionstore.EventTypes, ", "))
	errWebhookTooBig = codeBodyTooLarge.with("a webhook body is at most 16 KiB")
	errTooManyHooks  = codeTooManyWebhooks.err()
)

// maxWebhooksPerAccount bounds an account's webhooks: each event is queued
// once per endpoint, so the count multiplies every event's work.
const maxWebhooksPerAccount = 16

// webhookJSON is an endpoint as the API shows it; Secret only in the
// answer to its creation.
type webhookJSON struct {
	ID        string   `json:"id"`
	URL       string   `json:"url"`
	Events    []string `json:"events"`
	Secret    string   `json:"secret,omitempty"`
	CreatedAt string   `json:"created_at"`
}

func toWebhookJSON(h sessionstore.Webhook) webhookJSON {
	return webhookJSON{ID: h.ID, URL: h.URL, Events: h.Events, CreatedAt: h.CreatedAt.UTC().Format(time.RFC3339)}
}

// deliveryJSON is one event's delivery to an endpoint.
type deliveryJSON struct {
	EventID     string  `json:"event_id"`
	EventType   string  `json:"event_type"`
	State       string  `json:"state"`
	Attempts    int     `json:"attempts"`
	LastStatus  *int    `json:"last_status"`
	LastError   *string `json:"last_error"`
	NextAttempt *string `json:"next_attempt_at"`
	CreatedAt   string  `json:"created_at"`
	UpdatedAt   string  `json:"updated_at"`
}

// webhooksAPI serves the webhook API, and renders and verifies the
// events the webhook workers deliver.
type webhooksAPI struct {
	store interface {
		sessionstore.Webhooks
		Session(ctx context.Context, id string) (sessionstore.Session, error)
		AssetRecord(ctx context.Context, id string) (sessionstore.Asset, error)
		DeadProbes(ctx context.Context) ([]sessionstore.DeadProbe, error)
	}
	// targets are the receivers a webhook may be registered for.
	targets webhook.Targets
	assets  *assetsAPI
}

// serve serves the webhook API: POST and GET on webhooksPath, GET
// and DELETE on /{id}, GET on /{id}/deliveries.
func (wa *webhooksAPI) serve(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, p *params) error {
	id, sub := p.id, p.sub
	if id == "" {
		if rq.method == fasthttp.MethodPost {
			return wa.create(ctx, rc, rq.account)
		}
		hooks, err := wa.store.Webhooks(ctx, rq.account)
		if err != nil {
			return fmt.Errorf("proxy: list webhooks: %w", err)
		}
		out := make([]webhookJSON, 0, len(hooks))
		for _, h := range hooks {
			out = append(out, toWebhookJSON(h))
		}
		writeJSON(rc, fasthttp.StatusOK, map[string]any{"webhooks": out})
		return nil
	}
	h, err := wa.accountWebhook(ctx, rq.account, id)
	if err != nil {
		return err
	}
	switch {
	case sub == "deliveries":
		ds, err := wa.store.WebhookDeliveries(ctx, h.ID)
		if err != nil {
			return fmt.Errorf("proxy: webhook deliveries: %w", err)
		}
		out := make([]deliveryJSON, 0, len(ds))
		for _, d := range ds {
			out = append(out, toDeliveryJSON(d))
		}
		writeJSON(rc, fasthttp.StatusOK, map[string]any{"deliveries": out})
	case rq.method == fasthttp.MethodDelete:
		err := wa.store.DeleteWebhook(ctx, rq.account, h.ID)
		if errors.Is(err, sessionstore.ErrNotFound) {
			return errWebhookNotFound
		}
		if err != nil {
			return fmt.Errorf("proxy: delete webhook: %w", err)
		}
		rc.SetStatusCode(fasthttp.StatusNoContent)
	default:
		writeJSON(rc, fasthttp.StatusOK, toWebhookJSON(h))
	}
	return nil
}

// accountWebhook loads an endpoint of account; another account's is
// unknown (404), like its assets.
func (wa *webhooksAPI) accountWebhook(ctx context.Context, account, id string) (sessionstore.Webhook, error) {
	if !validID(id) {
		return sessionstore.Webhook{}, errWebhookNotFound
	}
	h, err := wa.store.Webhook(ctx, id)
	if errors.Is(err, sessionstore.ErrNotFound) || err == nil && h.Account != account {
		return sessionstore.Webhook{}, errWebhookNotFound
	}
	if err != nil {
		return sessionstore.Webhook{}, fmt.Errorf("proxy: load webhook: %w", err)
	}
	return h, nil
}

// webhookRequest is POST /api/v1/webhooks's body.
type webhookRequest struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

// readWebhookRequest reads and decodes a webhook creation's body.
func readWebhookRequest(rc *fasthttp.RequestCtx) (webhookRequest, error) {
	var req webhookRequest
	if rc.Request.Header.ContentLength() > maxWebhookBody {
		return req, errWebhookTooBig
	}
	body := rc.RequestBodyStream()
	if body == nil {
		return req, errWebhookBody
	}
	raw, err := io.ReadAll(io.LimitReader(body, maxWebhookBody+1))
	if err != nil {
		return req, errWebhookBody
	}
	if len(raw) > maxWebhookBody {
		return req, errWebhookTooBig
	}
	if err := json.Unmarshal(raw, &req); err != nil {
		return req, errWebhookBody
	}
	return req, nil
}

// webhookEvents checks a webhook's event types; none asked means all.
func webhookEvents(events []string) ([]string, error) {
	if len(events) == 0 {
		events = sessionstore.EventTypes
	}
	for _, e := range events {
		if !slices.Contains(sessionstore.EventTypes, e) {
			return nil, codeInvalidWebhook.with(
				fmt.Sprintf("unknown event %q; known: %s", e, strings.Join(sessionstore.EventTypes, ", ")))
		}
	}
	return events, nil
}

// checkURL refuses a webhook URL that is not an absolute http(s)
// URL, or whose target the configuration does not allow.
func (wa *webhooksAPI) checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(raw) > 2048 {
		return codeInvalidWebhook.with("url must be an absolute http or https URL (at most 2048 characters)")
	}
	if err := wa.targets.CheckURL(raw); err != nil {
		reason := "refused"
		if b, ok := errors.AsType[*webhook.BlockedError](err); ok {
			reason = b.Reason
		}
		return codeInvalidWebhook.with(
			"url must name a public host by a DNS name or a canonical IP address, without user:password@ (" + reason + ")")
	}
	return nil
}

// create serves POST /api/v1/webhooks.
func (wa *webhooksAPI) create(ctx context.Context, rc *fasthttp.RequestCtx, account string) error {
	req, err := readWebhookRequest(rc)
	if err != nil {
		return err
	}
	if err := wa.checkURL(req.URL); err != nil {
		return err
	}
	events, err := webhookEvents(req.Events)
	if err != nil {
		return err
	}
	slices.Sort(events)
	h := sessionstore.Webhook{ID: apikey.NewID(), Account: account, URL: req.URL, Events: slices.Compact(events),
		Secret: "whsec_" + rand.Text() + rand.Text(), CreatedAt: time.Now().UTC()}
	if hooks, err := wa.store.Webhooks(ctx, account); err != nil {
		return fmt.Errorf("proxy: list webhooks: %w", err)
	} else if len(hooks) >= maxWebhooksPerAccount {
		return errTooManyHooks
	}
	if err := wa.store.CreateWebhook(ctx, h); err != nil {
		return fmt.Errorf("proxy: create webhook: %w", err)
	}
	// Creations racing past the count above (on any node): each one that
	// sees too many once it is stored takes itself back. The last one
	// stored sees every other kept, so never more than the cap stay
	// (racers may all go: a retry then succeeds).
	hooks, err := wa.store.Webhooks(ctx, account)
	if err != nil {
		return fmt.Errorf("proxy: list webhooks: %w", err)
	}
	if len(hooks) > maxWebhooksPerAccount {
		if err := wa.store.DeleteWebhook(context.WithoutCancel(ctx), account, h.ID); err != nil {
			return fmt.Errorf("proxy: take back a webhook past the cap: %w", err)
		}
		return errTooManyHooks
	}
	j := toWebhookJSON(h)
	j.Secret = h.Secret // shown once
	rc.Response.Header.Set("Location", webhooksPath+"/"+h.ID)
	rc.Response.Header.Set("Cache-Control", "no-store")
	writeJSON(rc, fasthttp.StatusCreated, j)
	return nil
}

func toDeliveryJSON(d sessionstore.WebhookDelivery) deliveryJSON {
	j := deliveryJSON{EventID: d.EventID, EventType: d.EventType, State: d.State, Attempts: d.Attempts,
		LastError: nullable(d.LastError), CreatedAt: d.CreatedAt.UTC().Format(time.RFC3339),
		UpdatedAt: d.UpdatedAt.UTC().Format(time.RFC3339)}
	if d.LastStatus != 0 {
		j.LastStatus = &d.LastStatus
	}
	if d.State == sessionstore.DeliveryPending || d.State == sessionstore.DeliveryRetrying {
		j.NextAttempt = nullable(d.NextAttempt.UTC().Format(time.RFC3339))
	}
	return j
}

// WebhookVerify is webhook.Config.Verify: it tells whether the change an
// event was queued before has happened, and answers the asset as it
// stands now (before a deletion, the snapshot taken then). It reads the
// asset's record, deleted or not: an asset created, completed or probed
// and deleted before its event was verified still had that change.
func (s *Server) WebhookVerify(ctx context.Context, ev sessionstore.WebhookEvent) (sessionstore.Asset, bool, error) {
	return s.webhooks.verify(ctx, ev)
}

func (wa *webhooksAPI) verify(ctx context.Context, ev sessionstore.WebhookEvent) (sessionstore.Asset, bool, error) {
	if ev.Type == sessionstore.EventUploadExpired {
		_, err := wa.store.Session(ctx, ev.Asset.SessionID)
		return ev.Asset, errors.Is(err, sessionstore.ErrNotFound), ignoreNotFound(err)
	}
	a, err := wa.store.AssetRecord(ctx, ev.Asset.ID)
	if err != nil {
		// Never stored: a deletion's snapshot of it did not exist either.
		return ev.Asset, false, ignoreNotFound(err)
	}
	switch ev.Type {
	case sessionstore.EventAssetDeleted:
		return ev.Asset, a.Deleted, nil
	case sessionstore.EventAssetReady:
		return a, a.State == sessionstore.StateReady, nil
	case sessionstore.EventAssetProbed:
		if ev.Error == "" {
			return a, a.DurationSeconds != "", nil
		}
		dead, err := wa.store.DeadProbes(ctx)
		return a, slices.ContainsFunc(dead, func(d sessionstore.DeadProbe) bool { return d.AssetID == a.ID }), err
	}
	// asset.created: a direct upload's asset waits before its creation.
	return a, a.State != sessionstore.StateWaiting, nil
}

func ignoreNotFound(err error) error {
	if errors.Is(err, sessionstore.ErrNotFound) {
		return nil
	}
	return err
}

// WebhookAsset renders an event's asset as GET /api/v1/assets/{id} shows
// it, for webhook.Config.Render: a ready asset gets a download URL fresh
// at delivery time (a local one needs --public-url); a deleted or expired
// one (or one deleted before its event was verified) gets none.
func (s *Server) WebhookAsset(ctx context.Context, ev sessionstore.WebhookEvent) any {
	return s.webhooks.render(ctx, ev)
}

func (wa *webhooksAPI) render(ctx context.Context, ev sessionstore.WebhookEvent) any {
	a := ev.Asset
	gone := ev.Type == sessionstore.EventAssetDeleted || ev.Type == sessionstore.EventUploadExpired || a.Deleted
	if gone {
		a.State = sessionstore.StateUploading // no URL to bytes that are gone
	}
	j := wa.assets.render(ctx, nil, a)
	if gone && ev.Asset.State == sessionstore.StateReady {
		j.State, j.SHA256 = ev.Asset.State, ev.Asset.SHA256
	}
	return j
}
