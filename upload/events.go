package upload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// Event queueing: every change of an upload's asset that webhooks report
// is queued in the store as a WebhookEvent for the account's endpoints
// (the webhook package delivers them). Queueing only writes to the store:
// a slow or dead receiver cannot slow an upload.

// Enqueuer is what queueing an event needs of the session store.
type Enqueuer interface {
	EnqueueWebhookEvent(ctx context.Context, account string, ev sessionstore.WebhookEvent) (int, error)
}

// NewEvent returns an event of type typ about a (failure: a failed
// probe's reason), with the id of that change (EventID).
func NewEvent(typ string, a sessionstore.Asset, failure string) sessionstore.WebhookEvent {
	return sessionstore.WebhookEvent{ID: EventID(a.Account, typ, a.ID, failure != ""), Type: typ, Time: time.Now().UTC(), Asset: a, Error: failure}
}

// EventID is the id of the event of type typ about an asset (failed: a
// failed probe's): a UUID (version 8) derived from the change the event
// reports, not drawn at random. The same change told twice (a request
// that failed after queueing its event and was repeated, two racing
// creations through one direct upload URL, a probe run again after its
// node died) therefore carries one id, and a receiver that deduplicates
// redeliveries by id sees it once.
func EventID(account, typ, assetID string, failed bool) string {
	// One buffer hashed at once and the UUID's text built in place: the
	// id is made on every queued event (several per completing PATCH).
	b := make([]byte, 0, len(account)+len(typ)+len(assetID)+10)
	for _, f := range [...]string{account, typ, assetID, strconv.FormatBool(failed)} {
		b = append(append(b, f...), 0)
	}
	u := sha256.Sum256(b)
	u[6] = u[6]&0x0f | 0x80 // version 8
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	var out [36]byte
	hex.Encode(out[0:8], u[0:4])
	hex.Encode(out[9:13], u[4:6])
	hex.Encode(out[14:18], u[6:8])
	hex.Encode(out[19:23], u[8:10])
	hex.Encode(out[24:36], u[10:16])
	out[8], out[13], out[18], out[23] = '-', '-', '-', '-'
	return string(out[:])
}

// Emit queues an event of type typ about a for the account's endpoints.
func Emit(ctx context.Context, st Enqueuer, typ string, a sessionstore.Asset, failure string) error {
	return enqueue(ctx, st, NewEvent(typ, a, failure))
}

// EmitBefore queues an event of type typ about a BEFORE the state change
// it reports, marked to be verified: call it, and make the change only if
// it succeeded. Then no crash between the change and the queueing can
// lose the event, and the deliverer drops it if the change never happens.
func EmitBefore(ctx context.Context, st Enqueuer, typ string, a sessionstore.Asset, failure string) error {
	ev := NewEvent(typ, a, failure)
	ev.Verify = true
	return enqueue(ctx, st, ev)
}

func enqueue(ctx context.Context, st Enqueuer, ev sessionstore.WebhookEvent) error {
	typ, a := ev.Type, ev.Asset
	if _, err := st.EnqueueWebhookEvent(ctx, a.Account, ev); err != nil {
		return fmt.Errorf("webhook: enqueue %s of asset %s: %w", typ, a.ID, err)
	}
	return nil
}

// StoreEvents queues the service's events in a store (the Events of a
// server whose webhooks are on).
type StoreEvents struct{ Store Enqueuer }

// EmitBefore queues typ about a before the change (EmitBefore), bounded
// by 5 s and run even when the request is canceled. An asset without an
// id (a concatenation partial's) has no event.
func (e StoreEvents) EmitBefore(ctx context.Context, typ string, a sessionstore.Asset) error {
	if a.ID == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := EmitBefore(ctx, e.Store, typ, a, ""); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	return nil
}

// Before returns the event EmitBefore queues about a (marked to be
// verified), for a store write that makes the change to queue itself;
// false for an asset without an id, which has none.
func (e StoreEvents) Before(typ string, a sessionstore.Asset) (sessionstore.WebhookEvent, bool) {
	if a.ID == "" {
		return sessionstore.WebhookEvent{}, false
	}
	ev := NewEvent(typ, a, "")
	ev.Verify = true
	return ev, true
}
