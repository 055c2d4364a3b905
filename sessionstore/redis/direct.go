package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roughy/ingest/sessionstore"
)

// Direct uploads live in roughy:{<id>}:direct, a hash in the slot of the
// session and asset they create (the same id), so that one script claims
// the grant and creates the upload atomically on Cluster too:
//
//	rec      JSON DirectUpload (its Created and Revoked are the fields below)
//	exp      ExpiresAt in ms since 1970
//	created  "1" once the upload was created
//	claim    the claim (request id) that created it
//	revoked  "1" once revoked
func redisDirectKey(id string) string { return "roughy:{" + id + "}:direct" }

// luaCreateDirect stores a direct upload and its waiting asset unless the
// id is taken. KEYS[1] direct, KEYS[2] asset, KEYS[3] asset id index,
// KEYS[4] session. ARGV[1] id, ARGV[2] record JSON, ARGV[3] expiry ms,
// then the asset's field/value pairs.
var luaCreateDirect = goredis.NewScript(`
for i = 1, 4 do
	if redis.call('EXISTS', KEYS[i]) == 1 then return {7} end
end
redis.call('HSET', KEYS[1], 'rec', ARGV[2], 'exp', ARGV[3], 'created', '0', 'revoked', '0')
redis.call('HSET', KEYS[2], unpack(ARGV, 4, #ARGV))
redis.call('SET', KEYS[3], ARGV[1])
return {1}
`)

// luaClaimDirect creates the upload of a direct upload once; the same
// claim again, while its upload exists, answers "ok" without a change (the
// client resends a script whose reply was lost).
// KEYS[1] direct, KEYS[2] session, KEYS[3] asset, KEYS[4] the expiry set
// (absent on Cluster, written by a separate call). ARGV[1] now ms, ARGV[2]
// session id, ARGV[3] expiry score, ARGV[4] claim, ARGV[5] number of
// session field/value arguments that follow, then the session's, then the
// asset's.
// Answers {1, "ok" | "missing" | "revoked" | "created" | "expired"}.
var luaClaimDirect = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {1, 'missing'} end
local f = redis.call('HMGET', KEYS[1], 'revoked', 'created', 'exp', 'claim')
if f[2] == '1' and f[4] == ARGV[4] and redis.call('EXISTS', KEYS[2]) == 1 then return {1, 'ok'} end
if f[1] == '1' then return {1, 'revoked'} end
if f[2] == '1' or redis.call('EXISTS', KEYS[2]) == 1 then return {1, 'created'} end
if tonumber(ARGV[1]) > tonumber(f[3]) then return {1, 'expired'} end
local n = tonumber(ARGV[5])
redis.call('HSET', KEYS[2], unpack(ARGV, 6, 5 + n))
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], unpack(ARGV, 6 + n, #ARGV))
if #KEYS > 3 then redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2]) end
redis.call('HSET', KEYS[1], 'created', '1', 'claim', ARGV[4])
return {1, 'ok'}
`)

// luaRevokeDirect marks a direct upload revoked and, when it created no
// upload, its waiting asset deleted. KEYS[1] direct, KEYS[2] asset;
// ARGV[1] the asset's deleted field (raDeleted).
// Answers {1, direct hash as HGETALL} or {2}.
var luaRevokeDirect = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {2} end
if redis.call('HGET', KEYS[1], 'created') ~= '1' and redis.call('EXISTS', KEYS[2]) == 1 then
	redis.call('HSET', KEYS[2], ARGV[1], '1')
end
redis.call('HSET', KEYS[1], 'revoked', '1')
return {1, redis.call('HGETALL', KEYS[1])}
`)

// CreateDirectUpload stores d and its waiting asset a.
func (r *Store) CreateDirectUpload(ctx context.Context, d sessionstore.DirectUpload, a sessionstore.Asset) error {
	rec, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("sessionstore: redis: encode direct upload: %w", err)
	}
	keys := []string{redisDirectKey(d.ID), redisAssetKey(a.ID), redisAssetRefKey(a.ID), redisSessionKey(d.ID)}
	args := append([]any{d.ID, string(rec), strconv.FormatInt(d.ExpiresAt.UnixMilli(), 10)}, redisAssetFields(a)...)
	_, err = r.runScript(ctx, "create direct upload", luaCreateDirect, keys, args...)
	return err
}

// DirectUpload returns a direct upload, revoked ones too.
func (r *Store) DirectUpload(ctx context.Context, id string) (sessionstore.DirectUpload, error) {
	m, err := r.client.HGetAll(ctx, redisDirectKey(id)).Result()
	if err != nil {
		return sessionstore.DirectUpload{}, redisErr("direct upload", err)
	}
	return redisDecodeDirect(id, m)
}

func redisDecodeDirect(id string, m map[string]string) (sessionstore.DirectUpload, error) {
	if len(m) == 0 {
		return sessionstore.DirectUpload{}, fmt.Errorf("sessionstore: redis: direct upload %q: %w", id, sessionstore.ErrNotFound)
	}
	var d sessionstore.DirectUpload
	if err := json.Unmarshal([]byte(m["rec"]), &d); err != nil {
		return sessionstore.DirectUpload{}, fmt.Errorf("sessionstore: redis: corrupt direct upload %q: %w", id, err)
	}
	d.Created, d.Revoked, d.Claim = m["created"] == "1", m["revoked"] == "1", m["claim"]
	return d, nil
}

// ClaimDirectUpload creates the upload of direct upload id, once.
func (r *Store) ClaimDirectUpload(ctx context.Context, id, claim string, now time.Time, s sessionstore.Session, a sessionstore.Asset) error {
	if claim == "" {
		return fmt.Errorf("sessionstore: redis: claim direct upload %q: empty claim", id)
	}
	if s.NextPart < 1 {
		s.NextPart = 1
	}
	keys := []string{redisDirectKey(id), redisSessionKey(id), redisAssetKey(id)}
	if !r.cluster {
		keys = append(keys, redisExpiryKey)
	} else if err := r.client.ZAddNX(ctx, redisExpiryKey, goredis.Z{Score: float64(s.ExpiresAt.UnixMilli()), Member: s.ID}).Err(); err != nil {
		// As in CreateUpload: a stray entry is dropped by Expired.
		return redisErr("claim direct upload", err)
	}
	sf := redisSessionFields(s)
	args := append([]any{strconv.FormatInt(now.UnixMilli(), 10), s.ID, strconv.FormatInt(s.ExpiresAt.UnixMilli(), 10), claim, len(sf)}, sf...)
	args = append(args, redisAssetFields(a)...)
	out, err := r.runScript(ctx, "claim direct upload", luaClaimDirect, keys, args...)
	if err != nil {
		return err
	}
	status, _ := out[0].(string)
	var refusal error
	switch status {
	case "ok":
		return nil
	case "missing":
		refusal = sessionstore.ErrNotFound
	case "revoked":
		refusal = sessionstore.ErrRevoked
	case "created":
		refusal = sessionstore.ErrExists
	case "expired":
		refusal = sessionstore.ErrDirectExpired
	default:
		return fmt.Errorf("sessionstore: redis: claim direct upload: unexpected answer %q", status)
	}
	return fmt.Errorf("sessionstore: redis: claim direct upload %q: %w", id, refusal)
}

// RevokeDirectUpload marks the grant revoked and drops its waiting asset.
func (r *Store) RevokeDirectUpload(ctx context.Context, id string) (sessionstore.DirectUpload, error) {
	out, err := r.runScript(ctx, "revoke direct upload", luaRevokeDirect, []string{redisDirectKey(id), redisAssetKey(id)}, raDeleted)
	if err != nil {
		return sessionstore.DirectUpload{}, err
	}
	return redisDecodeDirect(id, redisFlatMap(out[0]))
}
