package redis

import (
	"context"
	"crypto/rand"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roughy/ingest/sessionstore"
)

// A node's release subscription can vanish without a word: on Cluster a
// migration of the channel's slot unsubscribes its sharded subscribers
// (SUNSUBSCRIBE, which go-redis does not act on), and a reconnect drops it
// for a moment everywhere. Every release request would then reach no one,
// and the askers would take the live node for dead. So the watcher pings
// itself on its own channel every releasePing and subscribes again when a
// ping did not come back by the next one; askers take a node for dead only
// once release requests went unanswered for releaseDeadAfter, several
// pings' time.
const (
	releasePing      = 250 * time.Millisecond
	releaseDeadAfter = time.Second
)

// silence is a run of release requests to one node that reached no
// subscriber.
type silence struct{ first, last time.Time }

// unanswered records a release request to holder that reached no
// subscriber (none) or did (!none), and reports whether unanswered ones
// have now come for releaseDeadAfter without a gap of that long: the
// holder is dead.
func (r *Store) unanswered(holder string, none bool, now time.Time) bool {
	r.silentMu.Lock()
	defer r.silentMu.Unlock()
	if !none {
		delete(r.silent, holder)
		return false
	}
	if r.silent == nil {
		r.silent = map[string]silence{}
	}
	for k, s := range r.silent {
		if now.Sub(s.last) > releaseDeadAfter {
			delete(r.silent, k)
		}
	}
	s, ok := r.silent[holder]
	if !ok {
		s.first = now
	}
	s.last = now
	if now.Sub(s.first) >= releaseDeadAfter {
		delete(r.silent, holder)
		return true
	}
	r.silent[holder] = s
	return false
}

// Release channel pings: "p <nonce>" (release requests are "a …"/"d …";
// decodeRelease ignores pings, and older nodes ignore them too).
const releasePingKind = "p "

// WatchReleases subscribes to this node's release channel and hands each
// request to fn until stop. The subscription is watched with pings and
// made again when it vanished (see releasePing); requests sent meanwhile
// are lost and sent again by their askers.
func (r *Store) WatchReleases(ctx context.Context, fn func(sessionstore.ReleaseRequest)) (func(), error) {
	ps, err := r.subscribeReleases(ctx)
	if err != nil {
		return nil, err
	}
	w := &releaseWatch{r: r, fn: fn, stop: make(chan struct{})}
	w.wg.Go(func() { w.run(ps) })
	var once sync.Once
	return func() {
		once.Do(func() {
			close(w.stop)
			w.wg.Wait()
		})
	}, nil
}

// subscribeReleases subscribes to this node's release channel and returns
// once the subscription is live.
func (r *Store) subscribeReleases(ctx context.Context) (*goredis.PubSub, error) {
	var ps *goredis.PubSub
	if r.cluster {
		ps = r.client.SSubscribe(ctx, redisReleasePrefix+r.node)
	} else {
		ps = r.client.Subscribe(ctx, redisReleasePrefix+r.node)
	}
	if _, err := ps.Receive(ctx); err != nil {
		ps.Close()
		return nil, redisErr("subscribe to release requests", err)
	}
	return ps, nil
}

// releaseWatch is one WatchReleases: its goroutine owns the subscription.
type releaseWatch struct {
	r    *Store
	fn   func(sessionstore.ReleaseRequest)
	stop chan struct{}
	wg   sync.WaitGroup
}

// run serves subscription after subscription until stop.
func (w *releaseWatch) run(ps *goredis.PubSub) {
	for ps != nil {
		lost := w.serve(ps)
		ps.Close()
		if !lost {
			return
		}
		ps = w.resubscribe()
	}
}

// serve delivers ps's requests until stop (false) or until a ping of its
// own did not come back by the next one (true: the subscription is gone).
func (w *releaseWatch) serve(ps *goredis.PubSub) bool {
	msgs := ps.Channel()
	t := time.NewTicker(releasePing)
	defer t.Stop()
	pending := "" // the ping on its way, if any
	handle := func(m *goredis.Message) {
		if nonce, ping := strings.CutPrefix(m.Payload, releasePingKind); ping {
			if nonce == pending {
				pending = ""
			}
			return
		}
		if rr, ok := decodeRelease(m.Payload); ok {
			w.fn(rr)
		}
	}
	for {
		select {
		case <-w.stop:
			return false
		case m, ok := <-msgs:
			if !ok {
				return true
			}
			handle(m)
		case <-t.C:
			if w.pingLost(msgs, &pending, handle) {
				return true
			}
		}
	}
}

// pingLost is serve's tick: it reports whether the subscription is gone
// (the last ping did not come back, or nobody heard the next), else sends
// the next ping and records its nonce in pending.
func (w *releaseWatch) pingLost(msgs <-chan *goredis.Message, pending *string, handle func(*goredis.Message)) bool {
	// What has arrived first: a slow fn may have kept the echo waiting in
	// the channel.
	for drained := false; *pending != "" && !drained; {
		select {
		case m, ok := <-msgs:
			if !ok {
				return true
			}
			handle(m)
		default:
			drained = true
		}
	}
	if *pending != "" {
		w.r.log.Warn("release subscription lost; subscribing again", "node", w.r.node)
		return true
	}
	nonce := rand.Text()[:8]
	ctx, cancel := context.WithTimeout(context.Background(), releasePing)
	n, err := w.r.publishRelease(ctx, w.r.node, releasePingKind+nonce)
	cancel()
	switch {
	case err != nil:
		// Redis unreachable: nothing to learn about the subscription;
		// go-redis reconnects it with the client.
	case n == 0:
		w.r.log.Warn("release subscription lost; subscribing again", "node", w.r.node)
		return true
	default:
		*pending = nonce
	}
	return false
}

// resubscribe subscribes again, every releasePing until it succeeds or
// stop (nil).
func (w *releaseWatch) resubscribe() *goredis.PubSub {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*releasePing)
		ps, err := w.r.subscribeReleases(ctx)
		cancel()
		if err == nil {
			return ps
		}
		w.r.log.Warn("release subscription not made again", "node", w.r.node, "err", err)
		select {
		case <-w.stop:
			return nil
		case <-time.After(releasePing):
		}
	}
}
