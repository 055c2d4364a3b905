package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roughy/ingest/sessionstore"
)

// redisRevokedChannel carries the hash of every revoked key (published by
// luaRevokeKey) to the nodes' key caches.
const redisRevokedChannel = "roughy:keys:revoked"

// redisWatchIdle is how long the revocation subscription waits for a
// message before it pings Redis, so that a dead connection is noticed and
// replaced (go-redis resubscribes on the next read).
const redisWatchIdle = 30 * time.Second

// CreateKey stores k; ErrExists if its id or hash is taken.
func (r *Store) CreateKey(ctx context.Context, k sessionstore.Key) error {
	_, err := r.runScript(ctx, "create key", luaCreateKey,
		[]string{redisKeyByID + k.ID, redisKeyByHash + k.Hash, redisKeysAll},
		k.ID, "id", k.ID, "acct", k.Account, "hash", k.Hash, "prefix", k.Prefix,
		"created", redisFmtTime(k.CreatedAt), "revoked", redisBool(k.Revoked))
	return err
}

// KeyByHash finds an unrevoked key by the hash of its secret.
func (r *Store) KeyByHash(ctx context.Context, hash string) (sessionstore.Key, error) {
	out, err := r.runScript(ctx, "key by hash", luaKeyByHash, []string{redisKeyByHash + hash}, redisKeyByID)
	if err != nil {
		return sessionstore.Key{}, err
	}
	k := redisDecodeKey(redisFlatMap(out[0]))
	if k.Revoked {
		return sessionstore.Key{}, fmt.Errorf("sessionstore: redis: key %q revoked: %w", k.ID, sessionstore.ErrNotFound)
	}
	return k, nil
}

// Keys lists every key, revoked ones too.
func (r *Store) Keys(ctx context.Context) ([]sessionstore.Key, error) {
	out, err := r.runScript(ctx, "keys", luaKeys, []string{redisKeysAll}, redisKeyByID)
	if err != nil {
		return nil, err
	}
	list, _ := out[0].([]any)
	keys := make([]sessionstore.Key, 0, len(list))
	for _, v := range list {
		keys = append(keys, redisDecodeKey(redisFlatMap(v)))
	}
	return keys, nil
}

// RevokeKey marks a key revoked and publishes its hash to every node's
// WatchKeyRevocations.
func (r *Store) RevokeKey(ctx context.Context, id string) error {
	_, err := r.runScript(ctx, "revoke key", luaRevokeKey, []string{redisKeyByID + id}, redisRevokedChannel)
	return err
}

// WatchKeyRevocations subscribes to the revocation channel. Redis pub/sub
// delivers only to connected subscribers, so every (re)subscription is
// reported as fn(""): the caller forgets what it cached, which covers the
// revocations published while the connection was down.
func (r *Store) WatchKeyRevocations(ctx context.Context, fn func(hash string)) error {
	ps := r.client.Subscribe(ctx, redisRevokedChannel)
	defer ps.Close()
	// Unblocks the read below when ctx ends.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, redisWatchIdle)
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			_ = ps.Ping(ctx) // a failed ping drops the connection: the next read redials
			continue
		}
		if err != nil {
			// Redis is down (or ps was closed by ctx): try again shortly.
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" {
				fn("")
			}
		case *goredis.Message:
			fn(m.Payload)
		}
	}
	return nil
}

func redisDecodeKey(m map[string]string) sessionstore.Key {
	return sessionstore.Key{ID: m["id"], Account: m["acct"], Hash: m["hash"], Prefix: m["prefix"],
		CreatedAt: redisParseTime(m["created"]), Revoked: m["revoked"] == "1"}
}

// Compile-time check: Redis is a Store.
var _ sessionstore.Store = (*Store)(nil)
