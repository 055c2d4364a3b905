package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roughy/ingest/sessionstore"
)

// Quota keys. Everything of one account's quota carries the account as
// hash tag, so one script checks and changes it atomically on every
// deployment, Cluster included:
//
//	roughy:{quota:<account>}:usage   hash: stored, uploads, reserved (usage)
//	                                 and max_stored, max_uploads,
//	                                 max_reserved (limits; absent = default)
//	roughy:{quota:<account>}:holds   hash: upload id → bytes held
//	roughy:{quota:<account>}:stored  hash: upload id → bytes stored
//
// An upload's session lives in another slot (its own id's), so on
// Cluster no script can reserve and create in one step. The order makes
// a crash leave only what the janitor can see and undo: the hold is
// indexed in roughy:{quota}:holds (ZSET of "<account>\n<upload id>"
// scored by ms) before it is made, and unindexed after it is settled or
// released. The proxy reserves before it creates the session and
// settles or releases after the session completed or is gone, so a
// crash in between leaves an indexed hold whose upload is missing or
// complete; the janitor (QuotaHolds) settles or releases it. Standalone
// and Sentinel use the same scheme: one code path, one behaviour.
const redisQuotaIndex = "roughy:{quota}:holds"

func redisQuotaKeys(account string) []string {
	p := "roughy:{quota:" + account + "}:"
	return []string{p + "usage", p + "holds", p + "stored"}
}

func redisQuotaMember(account, uploadID string) string { return account + "\n" + uploadID }

// luaQuotaReserve: KEYS usage, holds, stored; ARGV id, bytes, default
// max_stored, max_uploads, max_reserved. Answers {0} or {1, limit, max,
// used, want, 1 if the upload has no hold}. Mirrors QuotaCheck.
const luaQuotaReserveSrc = `
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return {0} end
local u = redis.call('HMGET', KEYS[1], 'stored', 'uploads', 'reserved', 'max_stored', 'max_uploads', 'max_reserved')
local stored, uploads, reserved = tonumber(u[1]) or 0, tonumber(u[2]) or 0, tonumber(u[3]) or 0
-- A stored limit: absent or negative is the server's default, but -2 is a
-- limit of zero (0 is unlimited); over() mirrors quotaOver.
local function lim(v, d)
  local n = tonumber(v)
  if n == -2 then return n end
  if n == nil or n < 0 then return tonumber(d) end
  return n
end
local function over(limit, total)
  return limit == -2 or (limit > 0 and total > limit)
end
local function shown(limit)
  if limit < 0 then return 0 end
  return limit
end
local maxStored, maxUploads, maxReserved = lim(u[4], ARGV[3]), lim(u[5], ARGV[4]), lim(u[6], ARGV[5])
local held = redis.call('HGET', KEYS[2], ARGV[1])
local newUpload = not held
local h = tonumber(held) or 0
local want = tonumber(ARGV[2]) - h
if want < 0 then want = 0 end
if newUpload and over(maxUploads, uploads + 1) then
  return {1, 'uploads', shown(maxUploads), uploads, 1, 1}
end
if want > 0 and over(maxReserved, reserved + want) then
  return {1, 'bytes_reserved', shown(maxReserved), reserved, want, newUpload and 1 or 0}
end
if want > 0 and over(maxStored, stored + reserved + want) then
  return {1, 'bytes_stored', shown(maxStored), stored + reserved, want, newUpload and 1 or 0}
end
if newUpload then redis.call('HINCRBY', KEYS[1], 'uploads', 1) end
if want > 0 then redis.call('HINCRBY', KEYS[1], 'reserved', want) end
redis.call('HSET', KEYS[2], ARGV[1], h + want)
return {0}
`

var luaQuotaReserve = goredis.NewScript(luaQuotaReserveSrc)

// luaQuotaDropHold is the start of the scripts below: it drops the
// upload's hold, if any, and takes it off the usage.
const luaQuotaDropHold = `
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'uploads', -1)
  redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(held))
end
`

// luaQuotaSettle: KEYS usage, holds, stored; ARGV id, size.
const luaQuotaSettleSrc = `
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return {0} end
` + luaQuotaDropHold + `redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'stored', ARGV[2])
return {0}
`

var luaQuotaSettle = goredis.NewScript(luaQuotaSettleSrc)

// luaQuotaRelease: KEYS usage, holds, stored; ARGV id.
var luaQuotaRelease = goredis.NewScript(luaQuotaDropHold + `local size = redis.call('HGET', KEYS[3], ARGV[1])
if size then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'stored', -tonumber(size))
end
return {0}
`)

// SetQuota replaces the account's limits.
func (r *Store) SetQuota(ctx context.Context, account string, l sessionstore.QuotaLimits) error {
	key := redisQuotaKeys(account)[0]
	_, err := r.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for _, f := range []struct {
			name string
			v    int64
		}{{"max_stored", l.BytesStored}, {"max_uploads", l.Uploads}, {"max_reserved", l.BytesReserved}} {
			if f.v < 0 && f.v != sessionstore.QuotaZero {
				p.HDel(ctx, key, f.name)
			} else {
				p.HSet(ctx, key, f.name, f.v)
			}
		}
		return nil
	})
	if err != nil {
		return redisErr("set quota", err)
	}
	return nil
}

// Quota returns the account's limits and usage.
func (r *Store) Quota(ctx context.Context, account string) (sessionstore.QuotaLimits, sessionstore.QuotaUsage, error) {
	vals, err := r.client.HMGet(ctx, redisQuotaKeys(account)[0],
		"stored", "uploads", "reserved", "max_stored", "max_uploads", "max_reserved").Result()
	if err != nil {
		return sessionstore.QuotaLimits{}, sessionstore.QuotaUsage{}, redisErr("quota", err)
	}
	num := func(v any, def int64) int64 {
		s, ok := v.(string)
		if !ok {
			return def
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return def
		}
		return n
	}
	u := sessionstore.QuotaUsage{BytesStored: num(vals[0], 0), Uploads: num(vals[1], 0), BytesReserved: num(vals[2], 0)}
	l := sessionstore.QuotaLimits{BytesStored: num(vals[3], sessionstore.QuotaDefault), Uploads: num(vals[4], sessionstore.QuotaDefault),
		BytesReserved: num(vals[5], sessionstore.QuotaDefault)}
	return l, u, nil
}

// ReserveQuota indexes the hold, then checks and grows it in one script
// on the account's slot.
func (r *Store) ReserveQuota(ctx context.Context, account, uploadID string, n int64, defaults sessionstore.QuotaLimits) error {
	start := time.Now()
	if err := r.client.ZAdd(ctx, redisQuotaIndex, goredis.Z{Score: float64(time.Now().UnixMilli()),
		Member: redisQuotaMember(account, uploadID)}).Err(); err != nil {
		r.observeQuota(start, err)
		return redisErr("reserve quota: index", err)
	}
	res, err := luaQuotaReserve.Run(ctx, r.client, redisQuotaKeys(account), uploadID, n,
		max(defaults.BytesStored, 0), max(defaults.Uploads, 0), max(defaults.BytesReserved, 0)).Slice()
	r.observeQuota(start, err)
	if err != nil {
		return redisErr("reserve quota", err)
	}
	if code, _ := res[0].(int64); code == 0 {
		return nil
	}
	if len(res) != 6 {
		return fmt.Errorf("sessionstore: redis: reserve quota: unexpected answer %v", res)
	}
	qe := &sessionstore.QuotaError{}
	qe.Limit, _ = res[1].(string)
	qe.Max, _ = res[2].(int64)
	qe.Used, _ = res[3].(int64)
	qe.Want, _ = res[4].(int64)
	if none, _ := res[5].(int64); none == 1 {
		// A refused first reservation leaves an index entry without a
		// hold; drop it now, so that a flood of refused creations does
		// not grow the index (if this fails, the janitor finds no upload
		// behind the entry and drops it).
		_ = r.unindexHold(context.WithoutCancel(ctx), account, uploadID)
	}
	return qe
}

// SettleQuota converts the hold into stored bytes, then unindexes it.
func (r *Store) SettleQuota(ctx context.Context, account, uploadID string, size int64) error {
	if err := luaQuotaSettle.Run(ctx, r.client, redisQuotaKeys(account), uploadID, size).Err(); err != nil {
		return redisErr("settle quota", err)
	}
	return r.unindexHold(ctx, account, uploadID)
}

// ReleaseQuota drops the hold or stored bytes, then unindexes it.
func (r *Store) ReleaseQuota(ctx context.Context, account, uploadID string) error {
	if err := luaQuotaRelease.Run(ctx, r.client, redisQuotaKeys(account), uploadID).Err(); err != nil {
		return redisErr("release quota", err)
	}
	return r.unindexHold(ctx, account, uploadID)
}

func (r *Store) unindexHold(ctx context.Context, account, uploadID string) error {
	if err := r.client.ZRem(ctx, redisQuotaIndex, redisQuotaMember(account, uploadID)).Err(); err != nil {
		return redisErr("quota: unindex", err)
	}
	return nil
}

// TouchQuota restamps the hold's index entry when the hold exists.
func (r *Store) TouchQuota(ctx context.Context, account, uploadID string) error {
	ok, err := r.client.HExists(ctx, redisQuotaKeys(account)[1], uploadID).Result()
	if err != nil {
		return redisErr("touch quota", err)
	}
	if !ok {
		return nil
	}
	err = r.client.ZAddXX(ctx, redisQuotaIndex, goredis.Z{Score: float64(time.Now().UnixMilli()),
		Member: redisQuotaMember(account, uploadID)}).Err()
	if err != nil {
		return redisErr("touch quota", err)
	}
	return nil
}

// QuotaHolds lists the oldest indexed holds stamped before before.
func (r *Store) QuotaHolds(ctx context.Context, before time.Time, limit int) ([]sessionstore.QuotaHold, error) {
	if limit <= 0 {
		return nil, nil
	}
	zs, err := r.client.ZRangeByScoreWithScores(ctx, redisQuotaIndex, &goredis.ZRangeBy{
		Min: "-inf", Max: "(" + strconv.FormatInt(before.UnixMilli(), 10), Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, redisErr("quota holds", err)
	}
	out := make([]sessionstore.QuotaHold, 0, len(zs))
	for _, z := range zs {
		m, _ := z.Member.(string)
		account, id, ok := strings.Cut(m, "\n")
		if !ok {
			continue
		}
		out = append(out, sessionstore.QuotaHold{Account: account, UploadID: id, Since: time.UnixMilli(int64(z.Score)).UTC()})
	}
	return out, nil
}

// observeQuota reports a reservation (its index step and script) to the
// observer as the script "reserve quota", like runScript does for the
// others: the first Redis work of every creation, so an outage shows here.
func (r *Store) observeQuota(start time.Time, err error) {
	if r.obs != nil {
		r.obs.RedisScript("reserve quota", time.Since(start), err)
	}
}
