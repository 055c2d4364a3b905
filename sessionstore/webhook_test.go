package sessionstore

import (
	"slices"
	"testing"
	"time"
)

// fixtureDeliveries are records whose ids are not in time order.
func fixtureDeliveries() []WebhookDelivery {
	t0 := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	return []WebhookDelivery{
		{EventID: "a", CreatedAt: t0.Add(3 * time.Second)},
		{EventID: "z", CreatedAt: t0},
		{EventID: "m", CreatedAt: t0.Add(5 * time.Second)},
		{EventID: "b", CreatedAt: t0.Add(time.Second)},
	}
}

// TestOverflowDeliveries: the records trimmed past the cap are the oldest
// by CreatedAt, whatever their ids.
func TestOverflowDeliveries(t *testing.T) {
	if got := OverflowDeliveries(fixtureDeliveries(), 4); got != nil {
		t.Fatalf("at the cap: got %v, want nothing trimmed", got)
	}
	got := OverflowDeliveries(fixtureDeliveries(), 2)
	slices.Sort(got)
	if !slices.Equal(got, []string{"b", "z"}) {
		t.Fatalf("keep 2: trimmed %v, want the two oldest [b z]", got)
	}
}

// TestNewestDeliveries: a listing is the newest records by CreatedAt, at
// most the cap of them (a log may hold HookLogSlack more until its trim).
func TestNewestDeliveries(t *testing.T) {
	var ids []string
	for _, d := range NewestDeliveries(fixtureDeliveries(), 2) {
		ids = append(ids, d.EventID)
	}
	if !slices.Equal(ids, []string{"m", "a"}) {
		t.Fatalf("newest 2: got %v, want [m a]", ids)
	}
	if HookLogTrimDue(MaxWebhookDeliveries+1) || !HookLogTrimDue(MaxWebhookDeliveries+HookLogSlack+1) {
		t.Fatal("a trim is due only past the cap and the slack")
	}
}
