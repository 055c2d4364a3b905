package sessionstore

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// Webhook event types.
const (
	EventAssetCreated  = "asset.created"
	EventAssetReady    = "asset.ready"
	EventAssetProbed   = "asset.probed"
	EventAssetDeleted  = "asset.deleted"
	EventUploadExpired = "upload.expired"
)

// EventTypes lists every webhook event type.
var EventTypes = []string{EventAssetCreated, EventAssetReady, EventAssetProbed, EventAssetDeleted, EventUploadExpired}

// Webhook is one of an account's endpoints. Secret signs its deliveries; the
// store keeps it because every delivery needs it, the API shows it once.
type Webhook struct {
	ID        string
	Account   string
	URL       string
	Events    []string
	Secret    string
	CreatedAt time.Time
}

// WebhookEvent is one state change to tell an account about. ID is stable
// across every retry: receivers deduplicate by it.
type WebhookEvent struct {
	ID   string
	Type string
	Time time.Time
	// Asset is the asset as it stood when the event happened.
	Asset Asset
	// Error is the probe's failure (asset.probed only; "" on success).
	Error string `json:",omitempty"`
	// Verify marks an event queued before the state change it reports
	// (so that no crash between the two can lose it): the deliverer first
	// checks that the change happened, and drops the event once it is
	// sure it never will. Asset is then the asset before the change.
	Verify bool `json:",omitempty"`
}

// WebhookJob is one queued delivery of an event to one webhook.
type WebhookJob struct {
	ID       string // queue-specific message id
	HookID   string
	Event    WebhookEvent
	Attempts int
	// Since is when the event was enqueued: retries stop MaxAge after it.
	Since time.Time
}

// Webhook delivery states, as GET /api/v1/webhooks/{id}/deliveries shows.
const (
	DeliveryPending   = "pending"   // queued, not tried yet
	DeliveryRetrying  = "retrying"  // failed, will be tried again
	DeliveryDelivered = "delivered" // the receiver answered 2xx
	DeliveryDead      = "dead"      // given up: dead-lettered
)

// WebhookDelivery is the latest state of one event's delivery to one
// webhook.
type WebhookDelivery struct {
	EventID   string
	EventType string
	HookID    string
	State     string
	Attempts  int
	// LastStatus is the receiver's last HTTP status (0: none, e.g. a
	// timeout); LastError says what went wrong.
	LastStatus  int
	LastError   string `json:",omitempty"`
	NextAttempt time.Time
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// DeliveryDropped is an outcome, never a recorded state: the job's event
// was queued to be verified and its state change never happened, so the
// job goes without a trace.
const DeliveryDropped = "dropped"

// WebhookOutcome settles a claimed delivery: State is DeliveryDelivered
// (the job is removed), DeliveryRetrying (requeued with Attempts+1, ready
// after RetryIn), DeliveryDead (removed, recorded as dead),
// DeliveryPending (requeued as the job's Event, Attempts unchanged, ready
// after RetryIn: an event verified now, or to verify again later, or put
// off without an attempt; after failed attempts it stays recorded as
// retrying, with Status and Error) or
// DeliveryDropped (removed, nothing recorded).
type WebhookOutcome struct {
	State   string
	Status  int
	Error   string
	RetryIn time.Duration
}

// webhookRecord is the delivery record a settle writes.
func webhookRecord(job WebhookJob, out WebhookOutcome, now time.Time) WebhookDelivery {
	d := WebhookDelivery{EventID: job.Event.ID, EventType: job.Event.Type, HookID: job.HookID, State: out.State,
		Attempts: job.Attempts + 1, LastStatus: out.Status, LastError: out.Error, CreatedAt: job.Since, UpdatedAt: now}
	if out.State == DeliveryRetrying {
		d.NextAttempt = now.Add(out.RetryIn)
	}
	return d
}

// SettleRecord is the delivery record a settle writes; false when it
// writes none: an event not verified yet, or dropped, is no delivery.
func SettleRecord(job WebhookJob, out WebhookOutcome, now time.Time) (WebhookDelivery, bool) {
	switch {
	case out.State == DeliveryDropped || out.State == DeliveryPending && job.Event.Verify:
		return WebhookDelivery{}, false
	case out.State == DeliveryPending:
		d := PendingRecord(job.HookID, job.Event, now)
		d.Attempts, d.CreatedAt, d.NextAttempt = job.Attempts, job.Since, now.Add(out.RetryIn)
		if job.Attempts > 0 {
			// Put off after failed attempts (its endpoint busy or
			// failing): still retrying, with the failure the deliverer
			// last saw there.
			d.State, d.LastStatus, d.LastError = DeliveryRetrying, out.Status, out.Error
		}
		return d, true
	}
	return webhookRecord(job, out, now), true
}

// Requeues reports whether out puts the job back in the queue.
func (out WebhookOutcome) Requeues() bool {
	return out.State == DeliveryRetrying || out.State == DeliveryPending
}

// PendingRecord is the delivery record of a newly queued job.
func PendingRecord(hookID string, ev WebhookEvent, now time.Time) WebhookDelivery {
	return WebhookDelivery{EventID: ev.ID, EventType: ev.Type, HookID: hookID, State: DeliveryPending,
		NextAttempt: now, CreatedAt: now, UpdatedAt: now}
}

// Subscribed reports whether h wants events of type typ.
func (h Webhook) Subscribed(typ string) bool {
	for _, e := range h.Events {
		if e == typ {
			return true
		}
	}
	return false
}

// sortDeliveries orders delivery records newest first: by CreatedAt, as
// event ids are derived from the change they report, not from time.
func sortDeliveries(ds []WebhookDelivery) {
	slices.SortFunc(ds, func(a, b WebhookDelivery) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), strings.Compare(b.EventID, a.EventID))
	})
}

// NewestDeliveries returns at most keep of ds, newest first (sorting ds).
func NewestDeliveries(ds []WebhookDelivery, keep int) []WebhookDelivery {
	sortDeliveries(ds)
	return ds[:min(len(ds), keep)]
}

// OverflowDeliveries returns the event ids of the records past the newest
// keep of ds (sorting ds newest first).
func OverflowDeliveries(ds []WebhookDelivery, keep int) []string {
	if len(ds) <= keep {
		return nil
	}
	sortDeliveries(ds)
	ids := make([]string, 0, len(ds)-keep)
	for _, d := range ds[keep:] {
		ids = append(ids, d.EventID)
	}
	return ids
}

// MaxWebhookDeliveries bounds the delivery records listed per webhook;
// the oldest go first.
const MaxWebhookDeliveries = 1000

// HookLogSlack is how many records past MaxWebhookDeliveries an endpoint's
// log may hold before it is trimmed back: a trim reads every record (ids
// are not in time order), so it runs once per HookLogSlack new events,
// not on each (the embedded store trims inside the write transaction that
// commits share).
const HookLogSlack = MaxWebhookDeliveries / 10

// HookLogTrimDue reports whether a log of n records is to be trimmed.
func HookLogTrimDue(n int) bool { return n > MaxWebhookDeliveries+HookLogSlack }
