package sessionstore

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// SetObserver makes the store report every script run to o. Call it
// before the store is used (it is not synchronized with running calls).
func (r *Redis) SetObserver(o Observer) { r.obs = o }

// QueueLengths counts each queue's stream (jobs waiting or claimed) and
// its set of retries waiting for their time, in one pipeline (on Cluster,
// one round trip per master that holds {probe} or {webhook}).
func (r *Redis) QueueLengths(ctx context.Context) (QueueLengths, error) {
	var cmds [4]*redis.IntCmd
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		cmds[0] = p.XLen(ctx, redisProbeStream)
		cmds[1] = p.ZCard(ctx, redisProbeDelayed)
		cmds[2] = p.XLen(ctx, redisHookStream)
		cmds[3] = p.ZCard(ctx, redisHookDelayed)
		return nil
	})
	if err != nil {
		return QueueLengths{}, redisErr("queue lengths", err)
	}
	return QueueLengths{Probe: cmds[0].Val() + cmds[1].Val(), Webhook: cmds[2].Val() + cmds[3].Val()}, nil
}

// ProbeQueueStats counts the probe queue (stream entries, claimed ones
// included, plus retries waiting for their time) and the dead letters, in
// one round trip: the keys share the {probe} slot. The oldest job is the
// stream's first entry, whose id is the time it was added.
func (r *Redis) ProbeQueueStats(ctx context.Context) (ProbeQueueStats, error) {
	var stream, delayed, dead *redis.IntCmd
	var first *redis.XMessageSliceCmd
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		stream = p.XLen(ctx, redisProbeStream)
		delayed = p.ZCard(ctx, redisProbeDelayed)
		dead = p.XLen(ctx, redisProbeDead)
		first = p.XRangeN(ctx, redisProbeStream, "-", "+", 1)
		return nil
	})
	if err != nil && err != redis.Nil {
		return ProbeQueueStats{}, redisErr("probe queue stats", err)
	}
	st := ProbeQueueStats{Jobs: stream.Val() + delayed.Val(), Dead: dead.Val()}
	if msgs := first.Val(); len(msgs) > 0 {
		ms, _, _ := strings.Cut(msgs[0].ID, "-")
		if v, err := strconv.ParseInt(ms, 10, 64); err == nil {
			st.Oldest = time.UnixMilli(v)
		}
	}
	return st, nil
}
