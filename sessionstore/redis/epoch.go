package redis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roughy/ingest/sessionstore"
)

// Data loss. Redis can come back empty: a failover to a replica that had
// not synced, a FLUSHALL, a restart without persistence. Nothing in the
// data says so, so every store writes a marker when it opens: the key
// redisEpochKey holds a random value, set by the first store that finds
// it missing and adopted by every later one. Ping compares it with the
// value the store adopted; when it is gone or replaced, the data the store
// knew is gone too, and Ping reports ErrDataLost once and adopts the new
// marker (so each node reports a loss once, and re-seeds what it owns).
// On Cluster the marker lives on one master: the loss of another master's
// slots goes unnoticed.
const redisEpochKey = "roughy:{meta}:epoch"

// luaAdoptEpoch sets KEYS[1] to ARGV[1] unless it exists and answers its
// value (SET NX GET needs Redis 7).
var luaAdoptEpoch = goredis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return {1, redis.call('GET', KEYS[1])}
`)

// adoptEpoch reads (or creates) the marker and remembers its value.
func (r *Store) adoptEpoch(ctx context.Context) error {
	out, err := r.runScript(ctx, "epoch", luaAdoptEpoch, []string{redisEpochKey}, rand.Text())
	if err != nil {
		return err
	}
	v, _ := out[0].(string)
	r.epoch.Store(v)
	return nil
}

// Ping checks that Redis answers and still holds the marker this store
// adopted (see redisEpochKey): one GET.
func (r *Store) Ping(ctx context.Context) error {
	got, err := r.client.Get(ctx, redisEpochKey).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return redisErr("ping", err)
	}
	want, _ := r.epoch.Load().(string)
	if err == nil && got == want {
		return nil
	}
	if err := r.adoptEpoch(ctx); err != nil {
		return err
	}
	return fmt.Errorf("sessionstore: redis: marker %s missing or replaced since this node last looked: %w", redisEpochKey, sessionstore.ErrDataLost)
}
