package webhook

import (
	"testing"
	"time"
)

// TestTurns: an endpoint has at most endpointCap attempts in flight, an
// account accountCap; threshold failures in a row pause the endpoint for
// the pause of the failures past it, then one attempt at a time tells
// whether it recovered, and a success ends the pause. Other accounts and
// endpoints go on meanwhile.
func TestTurns(t *testing.T) {
	pause := func(n int) time.Duration { return time.Duration(1<<n) * time.Second }
	tu := newTurns(2, 3, 2, pause, 10*time.Second)
	now := time.Unix(1_000_000, 0)
	take := func(account, ep string) (func(attemptOutcome), wait, bool) { return tu.take(account, ep, now) }
	fail := attemptOutcome{failed: true, status: 503, class: ClassStatus}

	a1, _, ok1 := take("a", "a x")
	a2, _, ok2 := take("a", "a x")
	if !ok1 || !ok2 {
		t.Fatal("two attempts at one endpoint: refused, want both taken")
	}
	if _, w, ok := take("a", "a x"); ok || w.Paused || w.RetryIn <= 0 {
		t.Fatalf("third attempt at the endpoint: got ok %v, wait %+v; want put off, busy", ok, w)
	}
	a3, _, ok := take("a", "a y")
	if !ok {
		t.Fatal("another endpoint of the account: refused, want taken")
	}
	if _, w, ok := take("a", "a z"); ok || w.Paused {
		t.Fatalf("a fourth attempt of the account: got ok %v, wait %+v; want put off (account cap 3)", ok, w)
	}
	b, _, ok := take("b", "b x")
	if !ok {
		t.Fatal("another account while account a is at its cap: refused, want taken")
	}
	now = now.Add(4 * time.Second)
	// Two in flight for 4 s: the next one waits about that long.
	if _, w, _ := take("a", "a x"); w.RetryIn != 4*time.Second {
		t.Fatalf("busy wait after 4 s of hanging attempts: got %v, want 4s", w.RetryIn)
	}
	fail.ended = now
	a1(fail)
	a2(fail) // two failures in a row: paused 1 s
	a3(attemptOutcome{ended: now})
	b(attemptOutcome{ended: now})
	_, w, ok := take("a", "a x")
	if ok || !w.Paused || w.RetryIn != time.Second || w.Status != 503 || w.Class != ClassStatus {
		t.Fatalf("endpoint after 2 failures: got ok %v, wait %+v; want paused 1s with its last failure", ok, w)
	}
	if _, _, ok := take("a", "a y"); !ok {
		t.Fatal("the account's healthy endpoint while another is paused: refused, want taken")
	}
	now = now.Add(time.Second)
	probe, _, ok := take("a", "a x")
	if !ok {
		t.Fatal("after the pause: refused, want one attempt")
	}
	if _, w, ok := take("a", "a x"); ok || !w.Paused {
		t.Fatalf("a second attempt while the first after a pause runs: got ok %v, wait %+v; want put off", ok, w)
	}
	fail.ended = now
	probe(fail) // third failure: paused 2 s
	if _, w, ok := take("a", "a x"); ok || w.RetryIn != 2*time.Second {
		t.Fatalf("after a third failure: got ok %v, wait %+v; want paused 2s", ok, w)
	}
	now = now.Add(2 * time.Second)
	probe, _, _ = take("a", "a x")
	probe(attemptOutcome{ended: now})
	for range 2 {
		if _, _, ok := take("a", "a x"); !ok {
			t.Fatal("after a success: refused, want the endpoint open again")
		}
	}
}
