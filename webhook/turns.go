package webhook

import (
	"sync"
	"time"
)

// turns shares a node's delivery workers between accounts and endpoints.
// The queue hands out jobs oldest first, whoever they are for; without
// turns, a burst of one account's events to a receiver that never answers
// holds every worker for the full timeout, round after round, and every
// other account's events wait behind them. A worker that claims a job
// whose endpoint or account is at its cap, or whose endpoint keeps
// failing, hands it back to the queue for later instead of waiting (the
// caller requeues it: a job held in memory would be reclaimed by another
// consumer and delivered twice).
//
// The counts are this node's: each node keeps its own workers free.
type turns struct {
	endpointCap int // deliveries in flight to one endpoint
	accountCap  int // deliveries in flight for one account
	// threshold is how many failures in a row pause an endpoint; pause
	// is the pause after the n-th failure past it (0-based).
	threshold int
	pause     func(n int) time.Duration
	timeout   time.Duration // the longest an attempt takes

	mu        sync.Mutex
	endpoints map[string]*lane
	accounts  map[string]*lane
	swept     time.Time
}

// lane is the state of one endpoint or account.
type lane struct {
	starts []time.Time // of the attempts in flight
	// latency is a moving average of how long attempts took.
	latency time.Duration
	// Endpoints only: consecutive failures, and the pause they caused.
	failures    int
	pausedUntil time.Time
	lastStatus  int
	lastClass   string
	used        time.Time
}

// wait is a job that cannot go now: come back after RetryIn. Paused
// says the endpoint is failing, not merely busy; Status and Class are its
// last failure since its last success.
type wait struct {
	RetryIn time.Duration
	Paused  bool
	Status  int
	Class   string
}

func newTurns(endpointCap, accountCap, threshold int, pause func(int) time.Duration, timeout time.Duration) *turns {
	return &turns{endpointCap: endpointCap, accountCap: accountCap, threshold: threshold, pause: pause, timeout: timeout,
		endpoints: map[string]*lane{}, accounts: map[string]*lane{}}
}

// take starts an attempt at endpoint for account if both have room and
// the endpoint is not paused; done must then be called once it ended.
func (t *turns) take(account, endpoint string, now time.Time) (done func(outcome attemptOutcome), w wait, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep(now)
	ep, acct := t.lane(t.endpoints, endpoint, now), t.lane(t.accounts, account, now)
	failing := ep.failures >= t.threshold
	switch {
	case failing && now.Before(ep.pausedUntil):
		return nil, wait{RetryIn: ep.pausedUntil.Sub(now), Paused: true, Status: ep.lastStatus, Class: ep.lastClass}, false
	case failing && len(ep.starts) > 0:
		// Paused no more: one attempt tells whether it recovered.
		return nil, wait{RetryIn: t.busyFor(ep, now), Paused: true, Status: ep.lastStatus, Class: ep.lastClass}, false
	case len(ep.starts) >= t.endpointCap:
		return nil, wait{RetryIn: t.busyFor(ep, now), Status: ep.lastStatus, Class: ep.lastClass}, false
	case len(acct.starts) >= t.accountCap:
		return nil, wait{RetryIn: t.busyFor(acct, now), Status: ep.lastStatus, Class: ep.lastClass}, false
	}
	ep.starts = append(ep.starts, now)
	acct.starts = append(acct.starts, now)
	return func(o attemptOutcome) { t.done(ep, acct, now, o) }, wait{}, true
}

// attemptOutcome is how an attempt ended.
type attemptOutcome struct {
	ended  time.Time
	failed bool
	skip   bool // cut short by shutdown: tells nothing about the receiver
	status int
	class  string
}

func (t *turns) done(ep, acct *lane, start time.Time, o attemptOutcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range []*lane{ep, acct} {
		if i := indexTime(l.starts, start); i >= 0 {
			l.starts = append(l.starts[:i], l.starts[i+1:]...)
		}
		l.used = o.ended
		if !o.skip {
			took := o.ended.Sub(start)
			if l.latency == 0 {
				l.latency = took
			} else {
				l.latency = (3*l.latency + took) / 4
			}
		}
	}
	switch {
	case o.skip:
	case !o.failed:
		ep.failures, ep.pausedUntil, ep.lastStatus, ep.lastClass = 0, time.Time{}, 0, ""
	default:
		ep.failures++
		ep.lastStatus, ep.lastClass = o.status, o.class
		if n := ep.failures - t.threshold; n >= 0 {
			ep.pausedUntil = o.ended.Add(t.pause(n))
		}
	}
}

// busyFor is how long a job waits for a busy lane: about as long as its
// attempts take, judged by the oldest one in flight too (a receiver that
// hangs has not finished one yet), within [50ms, timeout].
func (t *turns) busyFor(l *lane, now time.Time) time.Duration {
	d := l.latency
	for _, s := range l.starts {
		d = max(d, now.Sub(s))
	}
	return min(max(d, 50*time.Millisecond), t.timeout)
}

func (t *turns) lane(m map[string]*lane, key string, now time.Time) *lane {
	l := m[key]
	if l == nil {
		l = &lane{}
		m[key] = l
	}
	l.used = now
	return l
}

// sweep forgets, once a minute, lanes idle for an hour and not paused
// past now: their count is bounded by the endpoints recently used.
func (t *turns) sweep(now time.Time) {
	if now.Sub(t.swept) < time.Minute {
		return
	}
	t.swept = now
	for _, m := range []map[string]*lane{t.endpoints, t.accounts} {
		for k, l := range m {
			if len(l.starts) == 0 && now.Sub(l.used) > time.Hour && !now.Before(l.pausedUntil) {
				delete(m, k)
			}
		}
	}
}

func indexTime(ts []time.Time, t time.Time) int {
	for i, s := range ts {
		if s.Equal(t) {
			return i
		}
	}
	return -1
}
