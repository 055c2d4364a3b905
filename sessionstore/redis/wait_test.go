package redis_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/sessionstore"

	"github.com/roughy/ingest/sessionstore/redis"
)

// openRedisWith opens a store with options, closed when the test ends.
func openRedisWith(t testing.TB, url string, o redis.Options) *redis.Store {
	t.Helper()
	st, err := redis.NewWith(t.Context(), url, o)
	if err != nil {
		t.Fatalf("NewRedisWith(%+v): %v", o, err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestRedisCommitWaitsForReplicas runs a primary with one replica: a
// store that waits for one replica commits, and the replica has the
// commit by the time it is answered; a store that waits for two fails the
// commit, and a lease acquisition, with ErrUnavailable once its timeout
// passed.
func TestRedisCommitWaitsForReplicas(t *testing.T) {
	primary := testsvc.StartRedisServer(t)
	replica := testsvc.StartRedisReplica(t, primary)
	ctx := t.Context()
	one := openRedisWith(t, primary.URL(), redis.Options{WaitReplicas: 1})
	if err := redis.FlushAll(ctx, one); err != nil {
		t.Fatal(err)
	}
	s := redisUpload(t, one, 300)
	l, err := one.AcquireLease(ctx, s.ID, time.Minute, 3)
	if err != nil {
		t.Fatal(err)
	}
	commit := func(st *redis.Store, i int) error {
		_, err := st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: int64(i) * 100, NewOffset: int64(i+1) * 100, Length: -1,
			Parts: []sessionstore.Part{{Number: l.FirstPart + int32(i), ETag: `"e"`, Size: 100, Offset: int64(i) * 100}}})
		return err
	}
	if err := commit(one, 0); err != nil {
		t.Fatalf("Commit waiting for 1 replica of 1: %v", err)
	}
	if off, err := testsvc.RedisCommand(replica.Addr(), "HGET", "roughy:{"+s.ID+"}:session", "off"); err != nil || off != "100" {
		t.Fatalf("replica's offset once the commit was answered: got %q (%v), want 100", off, err)
	}

	two := openRedisWith(t, primary.URL(), redis.Options{WaitReplicas: 2, WaitTimeout: 100 * time.Millisecond})
	err = commit(two, 1)
	if !errors.Is(err, sessionstore.ErrUnavailable) || !strings.Contains(err.Error(), "1 of 2 replicas") {
		t.Fatalf("Commit waiting for 2 replicas of 1: got %v, want ErrUnavailable naming 1 of 2 replicas", err)
	}
	// The write itself was applied (as a commit whose answer was lost):
	// the upload goes on from it.
	if err := commit(one, 2); err != nil {
		t.Fatalf("next Commit waiting for 1 replica: %v", err)
	}

	// An acquisition is waited for too: a lease (its fencing token, its
	// part numbers) rolled back by a failover would be handed out twice.
	// One not acknowledged is released at once.
	s2 := redisUpload(t, one, 100)
	if _, err := two.AcquireLease(ctx, s2.ID, time.Minute, 1); !errors.Is(err, sessionstore.ErrUnavailable) {
		t.Fatalf("AcquireLease waiting for 2 replicas of 1: got %v, want ErrUnavailable", err)
	}
	if _, err := one.AcquireLease(ctx, s2.ID, time.Minute, 1); err != nil {
		t.Fatalf("AcquireLease after an unacknowledged one: %v, want the lease (released)", err)
	}
}

// TestRedisWaitOptions: options the server cannot honour, or out of
// range, are refused when the store opens. WAITAOF needs Redis 7.2: on an
// older server asking for it fails with a clear error; on a newer one a
// commit waits for the primary's and a replica's fsync.
func TestRedisWaitOptions(t *testing.T) {
	primary := testsvc.StartRedisServer(t)
	url := primary.URL()
	ctx := t.Context()
	for _, o := range []redis.Options{{WaitReplicas: -1}, {WaitReplicas: 1, WaitTimeout: 5 * time.Second}} {
		if st, err := redis.NewWith(ctx, url, o); err == nil {
			st.Close()
			t.Errorf("NewRedisWith(%+v): got nil error, want one", o)
		}
	}
	version, err := testsvc.RedisCommand(primary.Addr(), "INFO", "server")
	if err != nil {
		t.Fatal(err)
	}
	st, err := redis.NewWith(ctx, url, redis.Options{WaitAOF: true})
	if strings.Contains(version, "redis_version:7.0") || strings.Contains(version, "redis_version:6.") ||
		strings.Contains(version, "redis_version:7.1") {
		if err == nil {
			st.Close()
			t.Fatal("NewRedisWith(WaitAOF) on a server without WAITAOF: got nil error, want one")
		}
		if !strings.Contains(err.Error(), "WAITAOF") || !strings.Contains(err.Error(), "7.2") {
			t.Fatalf("NewRedisWith(WaitAOF) on a server without WAITAOF: got %q, want an error naming WAITAOF and Redis 7.2", err)
		}
		t.Logf("refused as expected: %v", err)
		return
	}
	if err != nil {
		t.Fatalf("NewRedisWith(WaitAOF) on a server with WAITAOF: %v", err)
	}
	st.Close()
	testsvc.StartRedisReplica(t, primary)
	aof := openRedisWith(t, url, redis.Options{WaitAOF: true, WaitReplicas: 1})
	s := redisUpload(t, aof, 100)
	l, err := aof.AcquireLease(ctx, s.ID, time.Minute, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := aof.Commit(ctx, l, sessionstore.Commit{NewOffset: 100, Length: -1,
		Parts: []sessionstore.Part{{Number: l.FirstPart, ETag: `"e"`, Size: 100}}}); err != nil {
		t.Fatalf("Commit waiting for the AOF of the primary and 1 replica: %v", err)
	}
}

// TestRedisClusterCommitWaits: on Cluster the wait goes to the master of
// the upload's slot, and a completion's probe job (another slot) is
// waited for too. These masters have no replica: an acquisition or a
// commit waiting for one fails with ErrUnavailable after the script ran
// (a MOVED or a script refusal would be another error).
func TestRedisClusterCommitWaits(t *testing.T) {
	nodes := testsvc.StartRedisCluster(t)
	ctx := t.Context()
	st := openRedisWith(t, nodes, redis.Options{WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond})
	s := redisUpload(t, st, 200)
	if _, err := st.AcquireLease(ctx, s.ID, time.Minute, 2); !errors.Is(err, sessionstore.ErrUnavailable) ||
		!strings.Contains(err.Error(), "acquire lease: sessionstore: backend unavailable: 0 of 1 replicas") {
		t.Fatalf("AcquireLease waiting for a replica none has: got %v, want ErrUnavailable", err)
	}
	// The lease from a store that does not wait (the refused one was
	// released), for the commits below.
	l, err := openRedisWith(t, nodes, redis.Options{}).AcquireLease(ctx, s.ID, time.Minute, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, complete := range []bool{false, true} {
		_, err := st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: int64(i) * 100, NewOffset: int64(i+1) * 100, Length: -1,
			Complete: complete, SHA256: "ff",
			Parts: []sessionstore.Part{{Number: l.FirstPart + int32(i), ETag: `"e"`, Size: 100, Offset: int64(i) * 100}}})
		want := "commit: sessionstore: backend unavailable: 0 of 1 replicas"
		if complete {
			want = "commit: probe job: sessionstore: backend unavailable: 0 of 1 replicas"
		}
		if !errors.Is(err, sessionstore.ErrUnavailable) || !strings.Contains(err.Error(), want) {
			t.Fatalf("Commit %d (complete %v) waiting for a replica none has: got %v, want ErrUnavailable with %q", i, complete, err, want)
		}
	}
}

// BenchmarkRedisCommitWait measures a committed part on a primary with
// one replica, both on this machine, without waiting and waiting for the
// replica: one commit at a time (its latency), and 8 uploads committing
// at once (throughput).
func BenchmarkRedisCommitWait(b *testing.B) {
	primary := testsvc.StartRedisServer(b)
	testsvc.StartRedisReplica(b, primary)
	for _, replicas := range []int{0, 1} {
		st := openRedisWith(b, primary.URL(), redis.Options{WaitReplicas: replicas})
		// committer commits parts of its own upload, a new one every 1000.
		committer := func(b *testing.B) func() {
			var l sessionstore.Lease
			i := 1000
			return func() {
				ctx := context.Background()
				if i == 1000 {
					id := "bench-" + rand.Text()
					now := time.Now()
					if err := st.CreateUpload(ctx, sessionstore.Session{ID: id, Account: "acme", AssetID: id, Length: -1,
						NextPart: 1, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, sessionstore.Asset{}); err != nil {
						b.Fatal(err)
					}
					var err error
					if l, err = st.AcquireLease(ctx, id, time.Hour, 1000); err != nil {
						b.Fatal(err)
					}
					i = 0
				}
				if _, err := st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: int64(i) * 100, NewOffset: int64(i+1) * 100,
					Length: -1, HashState: make([]byte, 108), ExpiresAt: time.Now().Add(time.Hour),
					Parts: []sessionstore.Part{{Number: l.FirstPart + int32(i), ETag: `"0123456789abcdef"`, Size: 100, Offset: int64(i) * 100}}}); err != nil {
					b.Fatal(err)
				}
				i++
			}
		}
		b.Run(fmt.Sprintf("wait=%d/serial", replicas), func(b *testing.B) {
			commit := committer(b)
			commit() // loads the script
			b.ResetTimer()
			for range b.N {
				commit()
			}
		})
		b.Run(fmt.Sprintf("wait=%d/parallel8", replicas), func(b *testing.B) {
			b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				commit := committer(b)
				for pb.Next() {
					commit()
				}
			})
		})
	}
}
