package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roughy/ingest/sessionstore"
)

// jobQueue is one durable queue on Redis: a stream read by a consumer
// group, with a sorted set of retries by due time. The probe queue and the
// webhook queue are two of them, told apart by their keys, the claim
// script that moves their due retries into the stream (each holds its own
// record), and poll.
type jobQueue struct {
	op              string // "probe", "webhook"
	stream, delayed string
	group           string
	script          *goredis.Script // moves due retries, then luaReclaim
	// poll, when > 0, is how often a blocked claim looks again for due
	// retries and entries to reclaim: XREADGROUP wakes only for new
	// entries. 0: the claim waits on XREADGROUP alone.
	poll time.Duration
}

// claim claims one entry of q, waiting up to block for one: at once a due
// retry or an entry whose consumer went quiet for reclaimAfter (a node
// killed mid-job), else a new entry. It answers the entry's id and fields.
func (q jobQueue) claim(ctx context.Context, r *Store, consumer string, block, reclaimAfter time.Duration) (string, map[string]string, error) {
	if q.poll <= 0 {
		return q.claimOnce(ctx, r, consumer, block, reclaimAfter)
	}
	deadline := time.Now().Add(block)
	for {
		wait := min(time.Until(deadline), q.poll)
		id, vals, err := q.claimOnce(ctx, r, consumer, wait, reclaimAfter)
		if err == nil || !errors.Is(err, sessionstore.ErrEmpty) || time.Until(deadline) <= 0 {
			return id, vals, err
		}
	}
}

// claimOnce claims one entry of q (reclaimed, or new with XREADGROUP
// blocking up to block) and answers its id and fields.
func (q jobQueue) claimOnce(ctx context.Context, r *Store, consumer string, block, reclaimAfter time.Duration) (string, map[string]string, error) {
	op := "claim " + q.op
	out, err := r.runScript(ctx, op, q.script, []string{q.stream, q.delayed},
		q.group, consumer, redisMillis(reclaimAfter))
	if err == nil {
		id, _ := out[0].(string)
		return id, redisFlatMap(out[1]), nil
	}
	if !errors.Is(err, sessionstore.ErrNotFound) {
		return "", nil, err
	}
	args := &goredis.XReadGroupArgs{Group: q.group, Consumer: consumer,
		Streams: []string{q.stream, ">"}, Count: 1, Block: -1}
	if block > 0 {
		args.Block = time.Duration(redisMillis(block)) * time.Millisecond
	}
	streams, err := r.client.XReadGroup(ctx, args).Result()
	switch {
	case errors.Is(err, goredis.Nil):
		return "", nil, fmt.Errorf("sessionstore: redis: %s: %w", op, sessionstore.ErrEmpty)
	case goredis.HasErrorPrefix(err, "NOGROUP"):
		// The data was flushed since the script ran; the next claim
		// creates the group again.
		return "", nil, fmt.Errorf("sessionstore: redis: %s: %w", op, sessionstore.ErrEmpty)
	case err != nil:
		return "", nil, redisErr(op, err)
	}
	for _, s := range streams {
		if len(s.Messages) == 0 {
			continue
		}
		m := s.Messages[0] // the claim asked for one entry
		vals := make(map[string]string, len(m.Values))
		for k, v := range m.Values {
			vals[k], _ = v.(string)
		}
		return m.ID, vals, nil
	}
	return "", nil, fmt.Errorf("sessionstore: redis: %s: %w", op, sessionstore.ErrEmpty)
}

// ack removes entry id of q: a job done, or one that is to be dropped.
func (q jobQueue) ack(ctx context.Context, r *Store, op, id string) error {
	_, err := r.runScript(ctx, op, luaAck, []string{q.stream}, q.group, id)
	return err
}
