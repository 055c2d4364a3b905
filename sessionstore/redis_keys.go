package sessionstore

import (
	"context"
	"fmt"
)

// CreateKey stores k; ErrExists if its id or hash is taken.
func (r *Redis) CreateKey(ctx context.Context, k Key) error {
	_, err := r.runScript(ctx, "create key", luaCreateKey,
		[]string{redisKeyByID + k.ID, redisKeyByHash + k.Hash, redisKeysAll},
		k.ID, "id", k.ID, "acct", k.Account, "hash", k.Hash, "prefix", k.Prefix,
		"created", redisFmtTime(k.CreatedAt), "revoked", redisBool(k.Revoked))
	return err
}

// KeyByHash finds an unrevoked key by the hash of its secret.
func (r *Redis) KeyByHash(ctx context.Context, hash string) (Key, error) {
	out, err := r.runScript(ctx, "key by hash", luaKeyByHash, []string{redisKeyByHash + hash}, redisKeyByID)
	if err != nil {
		return Key{}, err
	}
	k := redisDecodeKey(redisFlatMap(out[0]))
	if k.Revoked {
		return Key{}, fmt.Errorf("sessionstore: redis: key %q revoked: %w", k.ID, ErrNotFound)
	}
	return k, nil
}

// Keys lists every key, revoked ones too.
func (r *Redis) Keys(ctx context.Context) ([]Key, error) {
	out, err := r.runScript(ctx, "keys", luaKeys, []string{redisKeysAll}, redisKeyByID)
	if err != nil {
		return nil, err
	}
	list, _ := out[0].([]any)
	keys := make([]Key, 0, len(list))
	for _, v := range list {
		keys = append(keys, redisDecodeKey(redisFlatMap(v)))
	}
	return keys, nil
}

// RevokeKey marks a key revoked.
func (r *Redis) RevokeKey(ctx context.Context, id string) error {
	_, err := r.runScript(ctx, "revoke key", luaRevokeKey, []string{redisKeyByID + id})
	return err
}

func redisDecodeKey(m map[string]string) Key {
	return Key{ID: m["id"], Account: m["acct"], Hash: m["hash"], Prefix: m["prefix"],
		CreatedAt: redisParseTime(m["created"]), Revoked: m["revoked"] == "1"}
}

// Compile-time check: Redis is a Store.
var _ Store = (*Redis)(nil)
