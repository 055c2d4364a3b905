package redis_test

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/sessionstore"
)

// TestRedisUnansweredReleaseNotDead: one release request that reaches no
// subscriber does not make the holder dead (its subscription may be
// between a loss and its renewal): its lease stays.
func TestRedisUnansweredReleaseNotDead(t *testing.T) {
	t.Run("standalone", func(t *testing.T) { unansweredReleaseNotDead(t, testsvc.StartRedis(t)) })
	t.Run("cluster", func(t *testing.T) { unansweredReleaseNotDead(t, testsvc.StartRedisCluster(t)) })
}

func unansweredReleaseNotDead(t *testing.T, url string) {
	a := newRedis(t, url) // live (heartbeat), not subscribed
	b := joinRedis(t, url)
	ctx := t.Context()
	s := redisUpload(t, a, 1<<20)
	held, err := a.AcquireLease(ctx, s.ID, time.Minute, 0)
	if err != nil {
		t.Fatalf("AcquireLease: %v", err)
	}
	if err := b.RequestRelease(ctx, held.Holder, sessionstore.ReleaseRequest{SessionID: s.ID, Token: held.Token}); err != nil {
		t.Fatalf("RequestRelease: %v", err)
	}
	if _, err := b.AcquireLease(ctx, s.ID, time.Minute, 0); !errors.Is(err, sessionstore.ErrLocked) {
		t.Fatalf("AcquireLease after one unanswered release request: got %v, want ErrLocked (a live node taken for dead)", err)
	}
}

// TestRedisReleaseSubscriptionRecovers: a node whose release subscription
// vanished (standalone: its connection killed; Cluster: the channel's slot
// migrated to another master, which unsubscribes it without a word) is
// reachable for release requests again soon after, and the requests that
// found no subscriber meanwhile never make it dead.
func TestRedisReleaseSubscriptionRecovers(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		srv := testsvc.StartRedisServer(t)
		subscriptionRecovers(t, srv.URL(), func(t *testing.T) {
			if _, err := testsvc.RedisCommand(srv.Addr(), "CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
				t.Fatalf("CLIENT KILL TYPE pubsub: %v", err)
			}
		})
	})
	t.Run("cluster", func(t *testing.T) {
		nodes := testsvc.StartRedisCluster(t)
		subscriptionRecovers(t, nodes, func(t *testing.T) { migrateSlot(t, strings.Split(nodes, ","), "roughy:{nodes}:x") })
	})
}

func subscriptionRecovers(t *testing.T, url string, lose func(t *testing.T)) {
	a := newRedis(t, url)
	b := joinRedis(t, url)
	ctx := t.Context()
	s := redisUpload(t, a, 1<<20)
	held, err := a.AcquireLease(ctx, s.ID, time.Minute, 0)
	if err != nil {
		t.Fatalf("AcquireLease: %v", err)
	}
	got := make(chan sessionstore.ReleaseRequest, 64)
	stop, err := a.WatchReleases(ctx, func(r sessionstore.ReleaseRequest) { got <- r })
	if err != nil {
		t.Fatalf("WatchReleases: %v", err)
	}
	defer stop()
	lose(t)
	// Ask as a waiting request does, until the holder hears it; the
	// holder lives all along, so its lease must never be taken over.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err := b.RequestRelease(ctx, held.Holder, sessionstore.ReleaseRequest{SessionID: s.ID, Token: held.Token}); err != nil {
			t.Fatalf("RequestRelease: %v", err)
		}
		if _, err := b.AcquireLease(ctx, s.ID, time.Minute, 0); !errors.Is(err, sessionstore.ErrLocked) {
			t.Fatalf("AcquireLease while the holder lives: got %v, want ErrLocked (the live node was taken for dead)", err)
		}
		select {
		case r := <-got:
			if r.SessionID != s.ID || r.Token != held.Token {
				t.Fatalf("delivered %+v, want upload %s token %d", r, s.ID, held.Token)
			}
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("release requests did not reach the holder again within 5s of losing its subscription")
		}
	}
}

// migrateSlot moves key's slot to another master of the cluster at addrs,
// keys and all, as resharding does.
func migrateSlot(t *testing.T, addrs []string, key string) {
	t.Helper()
	ctx := t.Context()
	clients := map[string]*redis.Client{}
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		t.Cleanup(func() { c.Close() })
		clients[a] = c
	}
	seed := clients[addrs[0]]
	slot, err := seed.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatalf("CLUSTER KEYSLOT: %v", err)
	}
	shards, err := seed.ClusterShards(ctx).Result()
	if err != nil {
		t.Fatalf("CLUSTER SHARDS: %v", err)
	}
	var srcAddr string
	for _, sh := range shards {
		for _, r := range sh.Slots {
			if r.Start > slot || slot > r.End {
				continue
			}
			for _, n := range sh.Nodes {
				if n.Role == "master" {
					srcAddr = net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
				}
			}
		}
	}
	var dstAddr string
	for _, a := range addrs {
		if a != srcAddr {
			dstAddr = a
			break
		}
	}
	src, dst := clients[srcAddr], clients[dstAddr]
	if src == nil || dst == nil {
		t.Fatalf("slot %d: owner %q not among %v", slot, srcAddr, addrs)
	}
	srcID := src.ClusterMyID(ctx).Val()
	dstID := dst.ClusterMyID(ctx).Val()
	s := strconv.FormatInt(slot, 10)
	must := func(c *redis.Client, args ...any) {
		if err := c.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	must(dst, "CLUSTER", "SETSLOT", s, "IMPORTING", srcID)
	must(src, "CLUSTER", "SETSLOT", s, "MIGRATING", dstID)
	host, port, _ := net.SplitHostPort(dstAddr)
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, int(slot), 100).Result()
		if err != nil {
			t.Fatalf("CLUSTER GETKEYSINSLOT: %v", err)
		}
		if len(keys) == 0 {
			break
		}
		for _, k := range keys {
			if err := src.Migrate(ctx, host, port, k, 0, 5*time.Second).Err(); err != nil && !errors.Is(err, redis.Nil) {
				t.Fatalf("MIGRATE %s: %v", k, err)
			}
		}
	}
	for _, c := range clients {
		must(c, "CLUSTER", "SETSLOT", s, "NODE", dstID)
	}
}
