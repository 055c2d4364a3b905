package redis_test

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/sessionstore/storetest"

	"github.com/roughy/ingest/sessionstore/redis"
)

// newRedis connects to url and empties Redis, so that every test (the
// probe queue is shared) starts from nothing.
func newRedis(t *testing.T, url string) *redis.Store {
	t.Helper()
	st := joinRedis(t, url)
	if err := redis.FlushAll(t.Context(), st); err != nil {
		t.Fatalf("flush: %v", err)
	}
	return st
}

// joinRedis connects another node to url, keeping what Redis holds.
func joinRedis(t *testing.T, url string) *redis.Store {
	t.Helper()
	st, err := redis.New(t.Context(), url)
	if err != nil {
		t.Fatalf("NewRedis(%s): %v", url, err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return st
}

// redisFleet gives the store suite more nodes on the same Redis.
func redisFleet(url string) storetest.Fleet {
	return storetest.Fleet{
		Peer: func(t *testing.T, _ sessionstore.Store) sessionstore.Store { return joinRedis(t, url) },
		Crash: func(t *testing.T, st sessionstore.Store) sessionstore.Store {
			if err := redis.KillNode(t.Context(), st.(*redis.Store)); err != nil {
				t.Fatalf("kill node: %v", err)
			}
			return joinRedis(t, url)
		},
	}
}

func TestRedis(t *testing.T) {
	url := testsvc.StartRedis(t)
	storetest.Run(t, func(t *testing.T) sessionstore.Store {
		st := newRedis(t, url)
		if redis.IsCluster(st) {
			t.Fatalf("NewRedis(%s) chose Cluster for a standalone server", url)
		}
		return st
	}, redisFleet(url))
}

func TestRedisSentinel(t *testing.T) {
	_, url := testsvc.StartRedisSentinel(t)
	storetest.Run(t, func(t *testing.T) sessionstore.Store { return newRedis(t, url) }, redisFleet(url))
	// The master really comes from the Sentinel: an unknown name fails.
	bad := strings.Replace(url, "/"+testsvc.RedisSentinelMaster+"/", "/nosuchmaster/", 1)
	if st, err := redis.New(t.Context(), bad); err == nil {
		st.Close()
		t.Fatalf("NewRedis(%s): got nil error, want one", bad)
	}
}

func TestRedisCluster(t *testing.T) {
	nodes := testsvc.StartRedisCluster(t)
	storetest.Run(t, func(t *testing.T) sessionstore.Store {
		st := newRedis(t, nodes)
		if !redis.IsCluster(st) {
			t.Fatalf("NewRedis(%s) did not choose Cluster", nodes)
		}
		return st
	}, redisFleet(nodes))
	// One node's redis:// URL alone is a cluster seed too.
	first, _, _ := strings.Cut(nodes, ",")
	st := newRedis(t, "redis://"+first)
	if !redis.IsCluster(st) {
		t.Fatalf("NewRedis(redis://%s) of a cluster node did not choose Cluster", first)
	}
}

// redisUpload creates a fresh upload of length bytes.
func redisUpload(t *testing.T, st sessionstore.Store, length int64) sessionstore.Session {
	t.Helper()
	id := "rt-" + rand.Text()
	created := time.Now().UTC().Truncate(time.Second)
	s := sessionstore.Session{ID: id, Account: "acme", AssetID: id, Length: length, NextPart: 1,
		CreatedAt: created, ExpiresAt: created.Add(time.Hour)}
	a := sessionstore.Asset{ID: id, Account: "acme", SessionID: id, Type: "video",
		State: sessionstore.StateUploading, SizeBytes: length, StorageKey: "uploads/" + id, CreatedAt: created}
	if err := st.CreateUpload(t.Context(), s, a); err != nil {
		t.Fatalf("CreateUpload: %v", err)
	}
	return s
}

// TestRedisCommitRoundTrips counts what one committed part costs: round
// trips seen by the client, and commands Redis executed (the script's
// inner calls included), on standalone and on Cluster.
func TestRedisCommitRoundTrips(t *testing.T) {
	server := testsvc.StartRedisServer(t)
	nodes := testsvc.StartRedisCluster(t)
	for _, tc := range []struct{ name, url, addr string }{
		{"standalone", server.URL(), server.Addr()},
		{"cluster", nodes, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newRedis(t, tc.url)
			ctx := t.Context()
			const parts = 20
			s := redisUpload(t, st, parts*100)
			l, err := st.AcquireLease(ctx, s.ID, time.Minute, parts)
			if err != nil {
				t.Fatal(err)
			}
			commit := func(i int, complete bool) {
				t.Helper()
				_, err := st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: int64(i) * 100,
					NewOffset: int64(i+1) * 100, HashState: make([]byte, 108), Length: -1,
					Storage: []byte(`{"upload":"abc"}`), Complete: complete, SHA256: "ff",
					ExpiresAt: time.Now().Add(time.Hour), // the proxy slides the expiry on every commit
					Parts:     []sessionstore.Part{{Number: l.FirstPart + int32(i), ETag: `"0123456789abcdef"`, Size: 100, Offset: int64(i) * 100}}})
				if err != nil {
					t.Fatalf("Commit %d: %v", i, err)
				}
			}
			commit(0, false) // loads the script (EVALSHA, NOSCRIPT, EVAL)
			count := redis.CountRoundTrips(st)
			before := redisCalls(t, tc.addr)
			const n = parts - 2
			for i := 1; i <= n; i++ {
				commit(i, false)
			}
			trips, cmds := count.Trips.Load(), count.Commands.Load()
			if trips != n || cmds != n {
				t.Fatalf("%d commits: got %d round trips, %d commands; want %d each (1 per commit)", n, trips, cmds, n)
			}
			if tc.addr != "" {
				t.Logf("standalone: %.1f Redis commands executed per committed part (EVALSHA and the script's calls)",
					float64(redisCalls(t, tc.addr)-before)/n)
			}
			count.Trips.Store(0)
			commit(parts-1, true)
			want := int64(1)
			if redis.IsCluster(st) {
				want = 2 // the probe job's XADD lives in another slot
			}
			if got := count.Trips.Load(); got != want {
				t.Fatalf("completing commit: got %d round trips, want %d", got, want)
			}
			j, err := st.ClaimProbe(ctx, "c", time.Second, time.Minute)
			if err != nil || j.AssetID != s.AssetID {
				t.Fatalf("probe job after completion: got %+v, %v; want asset %s", j, err, s.AssetID)
			}
		})
	}
}

// redisCalls sums the calls of every command in INFO commandstats (0 when
// addr is "").
func redisCalls(t *testing.T, addr string) int64 {
	t.Helper()
	if addr == "" {
		return 0
	}
	info, err := testsvc.RedisCommand(addr, "INFO", "commandstats")
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	var total int64
	for line := range strings.SplitSeq(info, "\n") {
		_, rest, ok := strings.Cut(line, "calls=")
		if !ok || strings.HasPrefix(line, "cmdstat_info:") {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		v, err := strconv.ParseInt(n, 10, 64)
		if err != nil {
			t.Fatalf("commandstats line %q: %v", line, err)
		}
		total += v
	}
	return total
}

// TestRedisOutage kills Redis in the middle of an upload: every call fails
// with ErrUnavailable, and after a restart (append-only file, fsync always
// so that SIGKILL loses nothing acknowledged) the committed offset, parts,
// hash state and lease are all there.
func TestRedisOutage(t *testing.T) {
	server := testsvc.StartRedisServer(t, "--appendfsync", "always")
	st := newRedis(t, server.URL())
	ctx := t.Context()
	s := redisUpload(t, st, 1000)
	l, err := st.AcquireLease(ctx, s.ID, time.Minute, 2)
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: 0, NewOffset: 400, HashState: []byte("h400"),
		Length: -1, Parts: []sessionstore.Part{{Number: l.FirstPart, ETag: "e1", Size: 400}}})
	if err != nil {
		t.Fatal(err)
	}

	server.Kill()
	down, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	checks := map[string]error{"Ping": st.Ping(down)}
	_, checks["Session"] = st.Session(down, s.ID)
	_, checks["Commit"] = st.Commit(down, l, sessionstore.Commit{ExpectOffset: 400, NewOffset: 500, Length: -1})
	_, checks["AcquireLease"] = st.AcquireLease(down, s.ID, time.Minute, 1)
	_, checks["ClaimProbe"] = st.ClaimProbe(down, "c", 10*time.Millisecond, time.Minute)
	_, checks["KeyByHash"] = st.KeyByHash(down, "x")
	for name, err := range checks {
		if !errors.Is(err, sessionstore.ErrUnavailable) {
			t.Errorf("%s while Redis is down: got %v, want ErrUnavailable", name, err)
		}
	}
	t.Logf("6 calls failed in %v while Redis was down", time.Since(start))

	server.Start()
	var got sessionstore.Session
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err = st.Session(ctx, s.ID)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Session after restart: %v", err)
	}
	if got.Offset != 400 || string(got.HashState) != "h400" {
		t.Fatalf("after restart: got offset %d hash state %q, want 400 h400", got.Offset, got.HashState)
	}
	// A restart that kept the data (append-only file) is no data loss.
	if err := st.Ping(ctx); err != nil {
		t.Errorf("Ping after a restart that kept the data: got %v, want nil", err)
	}
	parts, err := st.Parts(ctx, s.ID)
	if err != nil || len(parts) != 1 || parts[0].ETag != "e1" {
		t.Fatalf("parts after restart: got %+v, %v; want part e1", parts, err)
	}
	// The lease survived too (it had a minute left): the upload goes on.
	if _, err := st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: 400, NewOffset: 1000, Length: -1,
		Complete: true, SHA256: "ff"}); err != nil {
		t.Fatalf("Commit after restart: %v", err)
	}
	if a, err := st.Asset(ctx, s.AssetID); err != nil || a.State != sessionstore.StateReady {
		t.Fatalf("asset after restart and completion: got %+v, %v; want ready", a, err)
	}
}

// TestRedisDataLoss: after FLUSHALL (from outside, as an operator or a
// failover to an empty replica would), Ping of every store on that Redis
// reports ErrDataLost once, then nil again; a store opened after the loss
// reports nothing.
func TestRedisDataLoss(t *testing.T) {
	server := testsvc.StartRedisServer(t)
	ctx := t.Context()
	open := func() *redis.Store {
		st, err := redis.New(ctx, server.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	stores := []*redis.Store{open(), open()}
	for i, st := range stores {
		if err := st.Ping(ctx); err != nil {
			t.Fatalf("Ping(store %d) before the loss: got %v, want nil", i, err)
		}
	}
	if _, err := testsvc.RedisCommand(server.Addr(), "FLUSHALL"); err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
	// The first finds the marker gone and writes a new one; the second
	// finds it replaced.
	for i, st := range stores {
		if err := st.Ping(ctx); !errors.Is(err, sessionstore.ErrDataLost) {
			t.Errorf("Ping(store %d) after FLUSHALL: got %v, want ErrDataLost", i, err)
		}
		if err := st.Ping(ctx); err != nil {
			t.Errorf("Ping(store %d) after the loss was reported: got %v, want nil", i, err)
		}
	}
	if err := open().Ping(ctx); err != nil {
		t.Errorf("Ping of a store opened after the loss: got %v, want nil", err)
	}
}

// TestRedisWatchResubscribes: when the subscription's connection is cut
// (revocations published meanwhile are lost to it), the watcher
// resubscribes by itself and says so with fn(""), on which the proxy
// empties its key cache.
func TestRedisWatchResubscribes(t *testing.T) {
	server := testsvc.StartRedisServer(t)
	st := newRedis(t, server.URL())
	got := make(chan string, 16)
	go func() { _ = st.WatchKeyRevocations(t.Context(), func(hash string) { got <- hash }) }()
	waitResync := func(what string) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case h := <-got:
				if h == "" {
					return
				}
			case <-timeout:
				t.Fatalf("%s: got no fn(\"\") within 5s, want one", what)
			}
		}
	}
	waitResync("subscription start")
	if _, err := testsvc.RedisCommand(server.Addr(), "CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
		t.Fatalf("CLIENT KILL: %v", err)
	}
	waitResync("after the connection was killed")
}

func TestRedisBadURL(t *testing.T) {
	for _, url := range []string{
		"redis+sentinel:///mymaster",
		"redis+sentinel://127.0.0.1:1",
		"redis+sentinel://127.0.0.1:1/master/notadb",
		"redis://127.0.0.1:1/notadb",
		"ftp://127.0.0.1:1",
	} {
		if st, err := redis.New(t.Context(), url); err == nil {
			st.Close()
			t.Errorf("NewRedis(%q): got nil error, want one", url)
		}
	}
	// A well-formed URL of a server that is not there is unavailable.
	port := testsvc.RedisFreePort(t)
	_, err := redis.New(t.Context(), "redis://127.0.0.1:"+strconv.Itoa(port)+"/0")
	if !errors.Is(err, sessionstore.ErrUnavailable) {
		t.Fatalf("NewRedis of a closed port: got %v, want ErrUnavailable", err)
	}
}

// BenchmarkRedisCommit measures one committed part against redis-server on
// loopback, standalone and a three-master Cluster: latency percentiles and
// round trips per commit.
func BenchmarkRedisCommit(b *testing.B) {
	b.Run("standalone", func(b *testing.B) { benchCommit(b, testsvc.StartRedis(b)) })
	b.Run("cluster", func(b *testing.B) { benchCommit(b, testsvc.StartRedisCluster(b)) })
}

func benchCommit(b *testing.B, url string) {
	st, err := redis.New(b.Context(), url)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := b.Context()
	id := "bench-" + rand.Text()
	s := sessionstore.Session{ID: id, Account: "acme", AssetID: id, Length: 1 << 50, NextPart: 1,
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	if err := st.CreateUpload(ctx, s, sessionstore.Asset{ID: id, Account: "acme", SessionID: id,
		State: sessionstore.StateUploading, SizeBytes: s.Length}); err != nil {
		b.Fatal(err)
	}
	l, err := st.AcquireLease(ctx, id, time.Hour, 0)
	if err != nil {
		b.Fatal(err)
	}
	hash := make([]byte, 108) // a marshaled SHA-256 state
	var off int64
	commit := func() {
		_, err := st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: off, NewOffset: off + 8<<20,
			HashState: hash, Length: -1, Storage: []byte(`{"upload":"abc","tail":""}`),
			Parts: []sessionstore.Part{{Number: int32(off>>23) + 1, ETag: `"0123456789abcdef0123456789abcdef"`, Size: 8 << 20, Offset: off}}})
		if err != nil {
			b.Fatal(err)
		}
		off += 8 << 20
	}
	commit() // loads the script
	count := redis.CountRoundTrips(st)
	var lat []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		commit()
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(count.Trips.Load())/float64(len(lat)), "roundtrips/op")
}

// TestRedisAssetIDDiffers covers the asset id index, which the suite (same
// id for session and asset, as the proxy does) never needs: lookup, probe
// result, soft delete and refusal of a taken asset id, on standalone and on
// Cluster (where the index lives in another slot).
func TestRedisAssetIDDiffers(t *testing.T) {
	for _, tc := range []struct{ name, url string }{
		{"standalone", testsvc.StartRedis(t)},
		{"cluster", testsvc.StartRedisCluster(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newRedis(t, tc.url)
			ctx := t.Context()
			sid, aid := "sess-"+rand.Text(), "asset-"+rand.Text()
			now := time.Now().UTC().Truncate(time.Second)
			s := sessionstore.Session{ID: sid, Account: "acme", AssetID: aid, Length: 10, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
			a := sessionstore.Asset{ID: aid, Account: "acme", SessionID: sid, State: sessionstore.StateUploading, SizeBytes: 10, CreatedAt: now}
			if err := st.CreateUpload(ctx, s, a); err != nil {
				t.Fatalf("CreateUpload: %v", err)
			}
			other := s
			other.ID = "sess-" + rand.Text()
			if err := st.CreateUpload(ctx, other, a); !errors.Is(err, sessionstore.ErrExists) {
				t.Fatalf("CreateUpload with a taken asset id: got %v, want ErrExists", err)
			}
			if _, err := st.Session(ctx, other.ID); !errors.Is(err, sessionstore.ErrNotFound) {
				t.Fatalf("Session of the refused upload: got %v, want ErrNotFound", err)
			}
			if _, err := st.Asset(ctx, sid); !errors.Is(err, sessionstore.ErrNotFound) {
				t.Fatalf("Asset(session id): got %v, want ErrNotFound", err)
			}
			l, err := st.AcquireLease(ctx, sid, time.Second, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Commit(ctx, l, sessionstore.Commit{NewOffset: 10, Length: -1, Complete: true, SHA256: "ab"}); err != nil {
				t.Fatalf("Commit: %v", err)
			}
			got, err := st.Asset(ctx, aid)
			if err != nil || got.State != sessionstore.StateReady || got.SessionID != sid || got.SHA256 != "ab" {
				t.Fatalf("Asset(%s): got %+v, %v; want ready, session %s", aid, got, err, sid)
			}
			j, err := st.ClaimProbe(ctx, "c", time.Second, time.Minute)
			if err != nil || j.AssetID != aid {
				t.Fatalf("ClaimProbe: got %+v, %v; want asset %s", j, err, aid)
			}
			if err := st.AckProbe(ctx, j, "4.200"); err != nil {
				t.Fatalf("AckProbe: %v", err)
			}
			if got, _ := st.Asset(ctx, aid); got.DurationSeconds != "4.200" {
				t.Fatalf("duration after AckProbe: got %q, want 4.200", got.DurationSeconds)
			}
			if _, err := st.DeleteUpload(ctx, sid); err != nil {
				t.Fatalf("DeleteUpload: %v", err)
			}
			if _, err := st.Asset(ctx, aid); !errors.Is(err, sessionstore.ErrNotFound) {
				t.Fatalf("Asset after delete: got %v, want ErrNotFound", err)
			}
		})
	}
}

// TestRedisClusterCompletionJob: on Cluster the probe job is added before
// the completing commit script. A completion the script refuses (the same
// state as a node that died between the two calls) must not hand out a
// job; the real completion hands out exactly one.
func TestRedisClusterCompletionJob(t *testing.T) {
	st := newRedis(t, testsvc.StartRedisCluster(t))
	redis.SetVerifyCutoff(st, 300*time.Millisecond)
	ctx := t.Context()
	s := redisUpload(t, st, 100)
	l, err := st.AcquireLease(ctx, s.ID, time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: 5, NewOffset: 100, Length: -1, Complete: true, SHA256: "ab"})
	if !errors.Is(err, sessionstore.ErrOffsetConflict) {
		t.Fatalf("refused completion: got %v, want ErrOffsetConflict", err)
	}
	wantEmpty := func(what string) {
		t.Helper()
		if j, err := st.ClaimProbe(ctx, "c", 10*time.Millisecond, time.Minute); !errors.Is(err, sessionstore.ErrEmpty) {
			t.Fatalf("%s: got job %+v, %v; want ErrEmpty", what, j, err)
		}
	}
	wantEmpty("ClaimProbe after a refused completion")
	time.Sleep(1200 * time.Millisecond) // the job comes back after 1 s, past the cutoff: dropped
	wantEmpty("ClaimProbe past the cutoff")

	if _, err := st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: 0, NewOffset: 100, Length: -1, Complete: true, SHA256: "ab"}); err != nil {
		t.Fatalf("completion: %v", err)
	}
	j, err := st.ClaimProbe(ctx, "c", time.Second, time.Minute)
	if err != nil || j.AssetID != s.AssetID || j.Attempts != 0 {
		t.Fatalf("ClaimProbe after completion: got %+v, %v; want asset %s, attempts 0", j, err, s.AssetID)
	}
	if err := st.AckProbe(ctx, j, "1.000"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond)
	wantEmpty("ClaimProbe after the job was acked")
	if dead, err := st.DeadProbes(ctx); err != nil || len(dead) != 0 {
		t.Fatalf("DeadProbes: got %+v, %v; want none", dead, err)
	}
}

// TestRedisURLErrorHidesPassword: a URL that does not parse must not put
// its password into the error (errors end up in logs).
func TestRedisURLErrorHidesPassword(t *testing.T) {
	for _, url := range []string{
		"redis://user:s3cret-pw@127.0.0.1:6379/%zz",
		"redis+sentinel://user:s3cret-pw%zz@127.0.0.1:1/m",
		"redis://user:s3cret-pw@127.0.0.1:1/%zz,127.0.0.1:2",
	} {
		_, err := redis.New(t.Context(), url)
		if err == nil {
			t.Fatalf("NewRedis(%q): got nil error, want one", url)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("NewRedis(%q): error %q shows the password", url, err)
		}
	}
}

// TestRedisClusterExpirySlides: on Cluster a sliding commit leaves the
// expiry set's entry at its old score (another slot, no second round
// trip); Expired then moves the entry to the real expiry instead of
// listing the session, so later scans do not meet it again.
func TestRedisClusterExpirySlides(t *testing.T) {
	st := newRedis(t, testsvc.StartRedisCluster(t))
	ctx := t.Context()
	s := redisUpload(t, st, 100)
	oldScore := s.ExpiresAt.UnixMilli()
	l, err := st.AcquireLease(ctx, s.ID, time.Minute, 0)
	if err != nil {
		t.Fatal(err)
	}
	slid := time.Now().Add(3 * time.Hour).Truncate(time.Millisecond)
	if _, err := st.Commit(ctx, l, sessionstore.Commit{NewOffset: 10, Length: -1, ExpiresAt: slid}); err != nil {
		t.Fatal(err)
	}
	if got, err := redis.ExpiryScore(ctx, st, s.ID); err != nil || got != oldScore {
		t.Fatalf("expiry score after the commit: got %d, %v; want the old %d (untouched on Cluster)", got, err, oldScore)
	}
	due := s.ExpiresAt.Add(time.Minute) // the old expiry is due, the new one not
	if got, err := st.Expired(ctx, due, 10); err != nil || len(got) != 0 {
		t.Fatalf("Expired(%v): got %v, %v; want none", due, got, err)
	}
	if got, err := redis.ExpiryScore(ctx, st, s.ID); err != nil || got != slid.UnixMilli() {
		t.Fatalf("expiry score after Expired: got %d, %v; want the new %d", got, err, slid.UnixMilli())
	}
	if got, err := st.Expired(ctx, slid.Add(time.Second), 10); err != nil || len(got) != 1 || got[0].ID != s.ID {
		t.Fatalf("Expired after the new expiry: got %v, %v; want %s", got, err, s.ID)
	}
}

// TestRedisReleaseToGoneHolder: a release request that no client receives
// (the holder's process is gone, so is its subscription) declares the
// holder dead at once, and the next acquisition takes its lease over;
// while the holder listens, it does not.
func TestRedisReleaseToGoneHolder(t *testing.T) {
	t.Run("standalone", func(t *testing.T) { releaseToGoneHolder(t, testsvc.StartRedis(t)) })
	t.Run("cluster", func(t *testing.T) { releaseToGoneHolder(t, testsvc.StartRedisCluster(t)) })
}

func releaseToGoneHolder(t *testing.T, url string) {
	a := newRedis(t, url)
	b := joinRedis(t, url)
	ctx := t.Context()
	s := redisUpload(t, a, 1<<20)
	held, err := a.AcquireLease(ctx, s.ID, time.Minute, 0)
	if err != nil {
		t.Fatalf("AcquireLease: %v", err)
	}
	stop, err := a.WatchReleases(ctx, func(sessionstore.ReleaseRequest) {})
	if err != nil {
		t.Fatalf("WatchReleases: %v", err)
	}
	if err := b.RequestRelease(ctx, held.Holder, sessionstore.ReleaseRequest{SessionID: s.ID}); err != nil {
		t.Fatalf("RequestRelease: %v", err)
	}
	if _, err := b.AcquireLease(ctx, s.ID, time.Minute, 0); !errors.Is(err, sessionstore.ErrLocked) {
		t.Fatalf("AcquireLease while the holder listens: got %v, want ErrLocked", err)
	}
	stop() // as a kill -9 would: the subscription is gone
	// Redis drops the subscription once it has read the close, a moment
	// later: ask and acquire as the proxy does. The holder is taken for
	// dead once requests went unanswered for a second (one is not
	// enough); its heartbeat still runs, so only the dropped subscription
	// can free the lease.
	var l sessionstore.Lease
	for deadline := time.Now().Add(2500 * time.Millisecond); ; time.Sleep(20 * time.Millisecond) {
		if err := b.RequestRelease(ctx, held.Holder, sessionstore.ReleaseRequest{SessionID: s.ID}); err != nil {
			t.Fatalf("RequestRelease: %v", err)
		}
		if l, err = b.AcquireLease(ctx, s.ID, time.Minute, 0); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("AcquireLease after release requests nobody received: %v", err)
		}
	}
	if l.Token <= held.Token {
		t.Fatalf("token after takeover: got %d, want > %d", l.Token, held.Token)
	}
}
