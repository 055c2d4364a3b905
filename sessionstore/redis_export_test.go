package sessionstore

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisFlushAll empties every master the store talks to, so that a test
// starts from nothing (the probe queue is shared by all uploads). r then
// adopts a new data-loss marker: the flush is no loss to r, and its
// node's liveness record is written again at once.
func RedisFlushAll(ctx context.Context, r *Redis) error {
	var err error
	if c, ok := r.client.(*redis.ClusterClient); ok {
		err = c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
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

// RedisKillNode makes r's node dead as a kill -9 would once its liveness
// record ran out: no more refreshes, and the record is gone. The client
// still works, like a node that was only paused and comes back.
func RedisKillNode(ctx context.Context, r *Redis) error {
	close(r.hbStop)
	r.hbWG.Wait()
	r.hbStop = nil
	return r.client.Del(ctx, redisNodeKey(r.node)).Err()
}

// RedisSetVerifyCutoff shortens how long an unverified Cluster completion
// job is kept.
func RedisSetVerifyCutoff(r *Redis, d time.Duration) { r.verifyCutoff = d }

// RedisIsCluster reports whether the store runs on Redis Cluster.
func RedisIsCluster(r *Redis) bool { return r.cluster }

// RedisRoundTrips counts what the store sends to Redis.
type RedisRoundTrips struct {
	// Trips counts network round trips: one per command sent alone, one per
	// pipeline.
	Trips atomic.Int64
	// Commands counts commands, those of pipelines included.
	Commands atomic.Int64
}

// RedisCountRoundTrips installs a go-redis hook on r that counts round
// trips and commands.
func RedisCountRoundTrips(r *Redis) *RedisRoundTrips {
	c := &RedisRoundTrips{}
	r.client.AddHook(countHook{c})
	return c
}

type countHook struct{ c *RedisRoundTrips }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.c.Trips.Add(1)
		h.c.Commands.Add(1)
		return next(ctx, cmd)
	}
}

func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.c.Trips.Add(1)
		h.c.Commands.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// RedisExpiryScore returns the score (ms) of session id in the expiry set.
func RedisExpiryScore(ctx context.Context, r *Redis, id string) (int64, error) {
	f, err := r.client.ZScore(ctx, redisExpiryKey, id).Result()
	return int64(f), err
}

// redisTestStreams are the queues' streams by queue name.
var redisTestStreams = map[string]string{"probe": redisProbeStream, "webhook": redisHookStream}

// luaFill creates the stream KEYS[1] with its consumer group ARGV[2] if
// it does not exist, then adds ARGV[1] entries of the field/value pairs
// ARGV[3...].
var luaFill = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
	redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[2], '0', 'MKSTREAM')
end
for i = 1, tonumber(ARGV[1]) do
	redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3, #ARGV))
end
return redis.call('XLEN', KEYS[1])
`)

// RedisFillQueue adds n entries that no consumer has read to the stream
// of queue ("probe" or "webhook"), by scripts of 5,000 (Redis serves
// nothing else while one runs): a backlog built in a second or two. Probe
// entries name asset "filler", webhook entries the webhook "filler".
func RedisFillQueue(ctx context.Context, r *Redis, queue string, n int) error {
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

// RedisStreamLen is the length of the stream of queue ("probe" or
// "webhook"): its entries waiting or claimed, retries waiting for their
// time left out.
func RedisStreamLen(ctx context.Context, r *Redis, queue string) (int64, error) {
	return r.client.XLen(ctx, redisTestStreams[queue]).Result()
}
