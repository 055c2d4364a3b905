package redis

import (
	"context"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roughy/ingest/sessionstore"
)

// SetObserver makes the store report every script run to o. Call it
// before the store is used (it is not synchronized with running calls).
func (r *Store) SetObserver(o sessionstore.Observer) { r.obs = o }

// QueueLengths counts each queue's stream (jobs waiting or claimed) and
// its set of retries waiting for their time, in one pipeline (on Cluster,
// one round trip per master that holds {probe} or {webhook}).
func (r *Store) QueueLengths(ctx context.Context) (sessionstore.QueueLengths, error) {
	var cmds [4]*goredis.IntCmd
	_, err := r.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		cmds[0] = p.XLen(ctx, redisProbeStream)
		cmds[1] = p.ZCard(ctx, redisProbeDelayed)
		cmds[2] = p.XLen(ctx, redisHookStream)
		cmds[3] = p.ZCard(ctx, redisHookDelayed)
		return nil
	})
	if err != nil {
		return sessionstore.QueueLengths{}, redisErr("queue lengths", err)
	}
	return sessionstore.QueueLengths{Probe: cmds[0].Val() + cmds[1].Val(), Webhook: cmds[2].Val() + cmds[3].Val()}, nil
}

// ProbeQueueStats counts the probe queue (stream entries, claimed ones
// included, plus retries waiting for their time) and the dead letters, in
// one round trip: the keys share the {probe} slot. The oldest job is the
// stream's first entry, whose id is the time it was added.
func (r *Store) ProbeQueueStats(ctx context.Context) (sessionstore.ProbeQueueStats, error) {
	var stream, delayed, dead *goredis.IntCmd
	var first *goredis.XMessageSliceCmd
	_, err := r.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		stream = p.XLen(ctx, redisProbeStream)
		delayed = p.ZCard(ctx, redisProbeDelayed)
		dead = p.XLen(ctx, redisProbeDead)
		first = p.XRangeN(ctx, redisProbeStream, "-", "+", 1)
		return nil
	})
	if err != nil && err != goredis.Nil {
		return sessionstore.ProbeQueueStats{}, redisErr("probe queue stats", err)
	}
	st := sessionstore.ProbeQueueStats{Jobs: stream.Val() + delayed.Val(), Dead: dead.Val()}
	if msgs := first.Val(); len(msgs) > 0 {
		ms, _, _ := strings.Cut(msgs[0].ID, "-")
		if v, err := strconv.ParseInt(ms, 10, 64); err == nil {
			st.Oldest = time.UnixMilli(v)
		}
	}
	return st, nil
}
