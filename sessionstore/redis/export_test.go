package redis

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// FlushAll empties every master the store talks to, so that a test
// starts from nothing (the probe queue is shared by all uploads). r then
// adopts a new data-loss marker: the flush is no loss to r, and its
// node's liveness record is written again at once.
func FlushAll(ctx context.Context, r *Store) error {
	var err error
	if c, ok := r.client.(*goredis.ClusterClient); ok {
		err = c.ForEachMaster(ctx, func(ctx context.Context, n *goredis.Client) error {
			return n.FlushAll(ctx).Err()
		})
	} else {
		err = r.client.FlushAll(ctx).Err()
	}
	if err != nil {
		return err
	}
	if err := r.adoptEpoch(ctx); err != nil {
		return err
	}
	return r.beat(ctx)
}

// KillNode makes r's node dead as a kill -9 would once its liveness
// record ran out: no more refreshes, and the record is gone. The client
// still works, like a node that was only paused and comes back.
func KillNode(ctx context.Context, r *Store) error {
	close(r.hbStop)
	r.hbWG.Wait()
	r.hbStop = nil
	return r.client.Del(ctx, redisNodeKey(r.node)).Err()
}

// SetVerifyCutoff shortens how long an unverified Cluster completion
// job is kept.
func SetVerifyCutoff(r *Store, d time.Duration) { r.verifyCutoff = d }

// IsCluster reports whether the store runs on Redis Cluster.
func IsCluster(r *Store) bool { return r.cluster }

// RoundTrips counts what the store sends to Redis.
type RoundTrips struct {
	// Trips counts network round trips: one per command sent alone, one per
	// pipeline.
	Trips atomic.Int64
	// Commands counts commands, those of pipelines included.
	Commands atomic.Int64
}

// CountRoundTrips installs a go-redis hook on r that counts round
// trips and commands.
func CountRoundTrips(r *Store) *RoundTrips {
	c := &RoundTrips{}
	r.client.AddHook(countHook{c})
	return c
}

type countHook struct{ c *RoundTrips }

func (h countHook) DialHook(next goredis.DialHook) goredis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h countHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.c.Trips.Add(1)
		h.c.Commands.Add(1)
		return next(ctx, cmd)
	}
}

func (h countHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.c.Trips.Add(1)
		h.c.Commands.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// ExpiryScore returns the score (ms) of session id in the expiry set.
func ExpiryScore(ctx context.Context, r *Store, id string) (int64, error) {
	f, err := r.client.ZScore(ctx, redisExpiryKey, id).Result()
	return int64(f), err
}

// redisTestStreams are the queues' streams by queue name.
var redisTestStreams = map[string]string{"probe": redisProbeStream, "webhook": redisHookStream}

// luaFill creates the stream KEYS[1] with its consumer group ARGV[2] if
// it does not exist, then adds ARGV[1] entries of the field/value pairs
// ARGV[3...].
var luaFill = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
	redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[2], '0', 'MKSTREAM')
end
for i = 1, tonumber(ARGV[1]) do
	redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3, #ARGV))
end
return redis.call('XLEN', KEYS[1])
`)

// FillQueue adds n entries that no consumer has read to the stream
// of queue ("probe" or "webhook"), by scripts of 5,000 (Redis serves
// nothing else while one runs): a backlog built in a second or two. Probe
// entries name asset "filler", webhook entries the webhook "filler".
func FillQueue(ctx context.Context, r *Store, queue string, n int) error {
	for n > 0 {
		k := min(n, 5000)
		args := []any{k, redisProbeGroup, "asset", "filler", "attempts", "0"}
		if queue == "webhook" {
			args = []any{k, redisHookGroup, "job", `{"h":"filler","e":{"ID":"filler","Type":"asset.ready"}}`}
		}
		if err := luaFill.Run(ctx, r.client, []string{redisTestStreams[queue]}, args...).Err(); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// StreamLen is the length of the stream of queue ("probe" or
// "webhook"): its entries waiting or claimed, retries waiting for their
// time left out.
func StreamLen(ctx context.Context, r *Store, queue string) (int64, error) {
	return r.client.XLen(ctx, redisTestStreams[queue]).Result()
}
