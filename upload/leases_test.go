package upload

import (
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/sessionstore/bolt"
	"github.com/roughy/ingest/sessionstore/redis"
)

// counts is an Observer that counts.
type counts struct{ tookOver, lost, released atomic.Int64 }

func (c *counts) TookOver()      { c.tookOver.Add(1) }
func (c *counts) LeaseLost()     { c.lost.Add(1) }
func (c *counts) LeaseReleased() { c.released.Add(1) }

// node is one node's leases over a store.
type node struct {
	store sessionstore.Store
	l     *Leases
	obs   *counts
}

func newNode(t *testing.T, st sessionstore.Store, cfg LeaseConfig) *node {
	t.Helper()
	n := &node{store: st, obs: &counts{}}
	n.l = NewLeases(st, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), n.obs)
	stop, err := n.l.Watch(t.Context())
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	t.Cleanup(stop)
	return n
}

// fleet is the nodes of one backend: two nodes on Redis, one on bbolt
// (one process owns its file: both "nodes" are the same).
type fleet func(t *testing.T, cfg LeaseConfig) (a, b *node)

func onStores(t *testing.T, fn func(t *testing.T, nodes fleet)) {
	t.Run("bbolt", func(t *testing.T) {
		fn(t, func(t *testing.T, cfg LeaseConfig) (*node, *node) {
			st, err := bolt.New(filepath.Join(t.TempDir(), "roughy.db"))
			if err != nil {
				t.Fatalf("NewLocal: %v", err)
			}
			t.Cleanup(func() { _ = st.Close() })
			n := newNode(t, st, cfg)
			return n, n
		})
	})
	t.Run("redis", func(t *testing.T) {
		url := testsvc.StartRedis(t)
		fn(t, func(t *testing.T, cfg LeaseConfig) (*node, *node) {
			open := func() sessionstore.Store {
				st, err := redis.New(t.Context(), url)
				if err != nil {
					t.Fatalf("NewRedis: %v", err)
				}
				t.Cleanup(func() { _ = st.Close() })
				return st
			}
			return newNode(t, open(), cfg), newNode(t, open(), cfg)
		})
	})
}

// newUpload stores an upload of 1000 bytes and returns its id.
func newUpload(t *testing.T, st sessionstore.Store) string {
	t.Helper()
	id := "up-" + rand.Text()
	now := time.Now().UTC().Truncate(time.Second)
	s := sessionstore.Session{ID: id, Account: "acme", Length: 1000, NextPart: 1, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := st.CreateUpload(t.Context(), s, sessionstore.Asset{}); err != nil {
		t.Fatalf("CreateUpload: %v", err)
	}
	return id
}

// body is a write's body: a cut is reported on cut.
type body struct{ cut chan error }

func newBody() *body { return &body{cut: make(chan error, 1)} }

func (b *body) Cut(cause error) bool {
	select {
	case b.cut <- cause:
		return true
	default:
		return false
	}
}

// write is a write that holds upload id on n, with a body, until the
// body is cut; then it lets go and sends the cut's cause on the returned
// channel.
func write(t *testing.T, n *node, id string) <-chan error {
	t.Helper()
	l, err := n.l.Take(t.Context(), id, 1, false, NoFence)
	if err != nil {
		t.Fatalf("Take for the first write: %v", err)
	}
	_, _, release := n.l.Hold(t.Context(), l)
	b := newBody()
	unregister := n.l.Register(id, b)
	done := make(chan error, 1)
	go func() {
		cause := <-b.cut
		unregister()
		release()
		done <- cause
	}()
	return done
}

var quick = LeaseConfig{TTL: 3 * time.Second, TakeoverWait: 2 * time.Second}

// TestTakeTakesOver: a request that finds the lease held by a write, on
// this node or another, cuts the write's body (ErrTakenOver, or
// ErrDeleted for a DELETE) and gets the lease once it let go.
func TestTakeTakesOver(t *testing.T) {
	onStores(t, func(t *testing.T, nodes fleet) {
		for _, del := range []bool{false, true} {
			a, b := nodes(t, quick)
			id := newUpload(t, a.store)
			done := write(t, a, id)
			l, err := b.l.Take(t.Context(), id, 0, del, NoFence)
			if err != nil {
				t.Fatalf("Take (delete %v) of a held upload: %v", del, err)
			}
			want := ErrTakenOver
			if del {
				want = ErrDeleted
			}
			if got := <-done; !errors.Is(got, want) {
				t.Fatalf("the write's body was cut with %v, want %v", got, want)
			}
			if l.Token == 0 || l.Holder != b.l.Node() {
				t.Fatalf("lease after takeover: token %d holder %q, want a token and %q", l.Token, l.Holder, b.l.Node())
			}
			if got := a.obs.tookOver.Load(); got != 1 {
				t.Fatalf("takeovers on the holder's node: got %d, want 1", got)
			}
		}
	})
}
