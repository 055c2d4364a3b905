package redis

import goredis "github.com/redis/go-redis/v9"

// Every script answers a table whose first element is one of these codes,
// so that a failed compare-and-set comes back as a value, not as an error
// string to parse.
const (
	luaOK        = 1
	luaNotFound  = 2
	luaConflict  = 3
	luaLeaseLost = 4
	luaLocked    = 5
	luaExhausted = 6
	luaExists    = 7
	luaFenced    = 8
)

// Session hash fields ("roughy:{<id>}:session"). The Lua scripts use the
// same names literally.
const (
	rsID       = "id"
	rsAccount  = "acct"
	rsAssetID  = "aid"
	rsLength   = "len"
	rsOffset   = "off"
	rsMetadata = "meta"
	rsPartial  = "partial"
	rsConcat   = "concat"
	rsHash     = "hs"
	rsStorage  = "st"
	rsNextPart = "next"
	rsDone     = "done"
	rsCreated  = "created"
	rsExpires  = "expires"
	rsFence    = "fence"
	// rsHeads is the head fence (Session.HeadFence): luaOffsetSession
	// increments it, luaAcquire compares it. Absent (0) until the first
	// offset retrieval; nodes that predate it ignore it.
	rsHeads = "heads"
)

// Asset hash fields ("roughy:{<session id>}:asset").
const (
	raID       = "id"
	raAccount  = "acct"
	raSession  = "sid"
	raType     = "type"
	raState    = "state"
	raSize     = "size"
	raCType    = "ctype"
	raFilename = "fname"
	raMetadata = "meta"
	raDuration = "dur"
	raSHA256   = "sha"
	raKey      = "key"
	raCreated  = "created"
	raDeleted  = "deleted"
)

// luaCreate stores a session and its asset if neither id is taken.
// KEYS[1] session, KEYS[2] asset of the session, then optionally the asset
// id index and the expiry set at the positions ARGV[1] and ARGV[2] name
// (0: absent; in Cluster they are written by separate calls).
// ARGV[3] session id, ARGV[4] expiry score, ARGV[5] number of session
// field/value arguments that follow, then the session's, then the asset's.
const luaCreateSrc = `
local refIdx, zIdx = tonumber(ARGV[1]), tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return {7} end
if refIdx > 0 and redis.call('EXISTS', KEYS[refIdx]) == 1 then return {7} end
local n = tonumber(ARGV[5])
redis.call('HSET', KEYS[1], unpack(ARGV, 6, 5 + n))
if #ARGV > 5 + n then
	redis.call('HSET', KEYS[2], unpack(ARGV, 6 + n, #ARGV))
	if refIdx > 0 then redis.call('SET', KEYS[refIdx], ARGV[3]) end
end
if zIdx > 0 then redis.call('ZADD', KEYS[zIdx], ARGV[4], ARGV[3]) end
return {1}
`

var luaCreate = goredis.NewScript(luaCreateSrc)

// luaUnref drops an asset id index entry if it still names the session
// (undoes the pre-claim of a Cluster creation that failed).
var luaUnref = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return {1}
`)

// luaAcquire takes the lease and reserves part numbers, recording the
// holder node in the session hash.
// KEYS[1] session, KEYS[2] lease. ARGV[1] ttl ms, ARGV[2] parts, ARGV[3]
// MaxPartNumber, ARGV[4] this node, ARGV[5] the liveness key prefix ("" on
// Cluster, where the holder's key is in another slot), ARGV[6] the token
// of a lease whose holder the caller found dead ("" for none).
// A held lease is taken over when its holder (another node: a node knows
// it is alive) has no liveness key, or
// when it is still the lease of ARGV[6]; else the answer is {5, holder,
// token}. ARGV[7], when not "", is the head fence the caller read: {8}
// when the session's has grown past it, before the lease is looked at. Answers {1, token, first part, session hash as HGETALL}: the
// holder needs no second round trip to read it.
var luaAcquire = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {2} end
if ARGV[7] ~= '' and tonumber(redis.call('HGET', KEYS[1], 'heads') or '0') > tonumber(ARGV[7]) then
	return {8}
end
local cur = redis.call('GET', KEYS[2])
if cur then
	local holder = redis.call('HGET', KEYS[1], 'holder') or ''
	local dead = ARGV[6] ~= '' and cur == ARGV[6]
	if not dead and ARGV[5] ~= '' and holder ~= '' and holder ~= ARGV[4] then
		dead = redis.call('EXISTS', ARGV[5] .. holder) == 0
	end
	if not dead then return {5, holder, cur} end
end
local parts = tonumber(ARGV[2])
local first = 0
if parts > 0 then
	local nextPart = tonumber(redis.call('HGET', KEYS[1], 'next'))
	if nextPart + parts - 1 > tonumber(ARGV[3]) then return {6} end
	first = nextPart
	redis.call('HINCRBY', KEYS[1], 'next', parts)
end
local token = redis.call('HINCRBY', KEYS[1], 'fence', 1)
redis.call('HSET', KEYS[1], 'holder', ARGV[4])
redis.call('SET', KEYS[2], token, 'PX', ARGV[1])
return {1, token, first, redis.call('HGETALL', KEYS[1])}
`)

// luaSession reads the session hash and whether its lease is held.
// KEYS[1] session, KEYS[2] lease. Answers {1, session hash as HGETALL,
// 1 if the lease key exists else 0}, or {2} when there is no session.
var luaSession = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {2} end
return {1, redis.call('HGETALL', KEYS[1]), redis.call('EXISTS', KEYS[2])}
`)

// luaOffsetSession is luaSession for offset retrieval: it increments the
// head fence first, in the same step as it reads whether the lease is
// held. KEYS and answers as luaSession's.
var luaOffsetSession = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {2} end
redis.call('HINCRBY', KEYS[1], 'heads', 1)
return {1, redis.call('HGETALL', KEYS[1]), redis.call('EXISTS', KEYS[2])}
`)

// luaRenew extends the lease if the token is still current.
// KEYS[1] lease. ARGV[1] token, ARGV[2] ttl ms.
var luaRenew = goredis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {4} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1}
`)

// luaDropLease drops the lease if its token is ARGV[2] and the session's
// recorded holder is ARGV[1].
// KEYS[1] session, KEYS[2] lease.
var luaDropLease = goredis.NewScript(`
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
	redis.call('DEL', KEYS[2])
end
return {1}
`)

// luaRelease drops the lease if the token is still current.
// KEYS[1] lease. ARGV[1] token.
var luaRelease = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return {1}
`)

// luaCommit is the one round trip of a committed part: it checks the lease
// token, then the offset, then appends the parts, advances the offset,
// saves hash and storage state, slides the expiry and, on completion,
// makes the asset ready and drops the parts list (the final object no
// longer needs it; the session hash stays for HEAD).
// KEYS[1] session, KEYS[2] parts, KEYS[3] lease, KEYS[4] asset, then
// optionally the expiry set and the probe stream (standalone and Sentinel
// only: in Cluster they live in other slots; see Store.Commit).
// ARGV[1] token, [2] expected offset, [3] new offset, [4] hash state,
// [5] "1" if [6] storage replaces the old, [7] length (-1: unchanged),
// [8] "1" to complete, [9] SHA-256, [10] session id, [11] new expiry in
// ns ("": unchanged), [12] its expiry-set score (ms), [13] lease extension
// in ms (0: none), [14] "1" to allow a rewind (Commit.Rewind: the new
// offset may be below the expected one), [15...] encoded parts.
// Answers {1, flat session hash, expiry before the commit}.
const luaCommitSrc = `
if redis.call('EXISTS', KEYS[1]) == 0 then return {2} end
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return {4} end
local cur = redis.call('HMGET', KEYS[1], 'off', 'len', 'done')
if cur[1] ~= ARGV[2] or cur[3] == '1' then return {3} end
local newOff = tonumber(ARGV[3])
if newOff < 0 or (newOff < tonumber(ARGV[2]) and (ARGV[14] ~= '1' or ARGV[8] == '1')) then return {3} end
local len, setLen = tonumber(cur[2]), nil
if tonumber(ARGV[7]) >= 0 then
	if len >= 0 and len ~= tonumber(ARGV[7]) then return {3} end
	if len < 0 then len, setLen = tonumber(ARGV[7]), ARGV[7] end
end
if len >= 0 and newOff > len then return {3} end
local complete = ARGV[8] == '1'
if complete then
	if len < 0 then len, setLen = newOff, ARGV[3] end
	if len ~= newOff then return {3} end
end
redis.call('HSET', KEYS[1], 'off', ARGV[3], 'hs', ARGV[4])
if ARGV[5] == '1' then redis.call('HSET', KEYS[1], 'st', ARGV[6]) end
local hasAsset = redis.call('EXISTS', KEYS[4]) == 1
if setLen then
	redis.call('HSET', KEYS[1], 'len', setLen)
	if hasAsset then redis.call('HSET', KEYS[4], 'size', setLen) end
end
local oldExp = redis.call('HGET', KEYS[1], 'expires') or ''
if ARGV[11] ~= '' then
	redis.call('HSET', KEYS[1], 'expires', ARGV[11])
	if KEYS[5] and not complete then redis.call('ZADD', KEYS[5], ARGV[12], ARGV[10]) end
end
if not complete then
	for i = 15, #ARGV, 500 do
		redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 499, #ARGV)))
	end
else
	redis.call('DEL', KEYS[2])
	redis.call('HSET', KEYS[1], 'done', '1')
	if KEYS[5] then redis.call('ZREM', KEYS[5], ARGV[10]) end
	if hasAsset and redis.call('HGET', KEYS[4], 'deleted') ~= '1' then
		redis.call('HSET', KEYS[4], 'state', 'ready', 'sha', ARGV[9], 'size', ARGV[3])
		if KEYS[6] then
			local aid = redis.call('HGET', KEYS[4], 'id')
			redis.call('XADD', KEYS[6], '*', 'asset', aid, 'attempts', '0')
		end
	end
end
if tonumber(ARGV[13]) > 0 then redis.call('PEXPIRE', KEYS[3], ARGV[13]) end
return {1, redis.call('HGETALL', KEYS[1]), oldExp}
`

var luaCommit = goredis.NewScript(luaCommitSrc)

// luaSetLength sets a deferred length once.
// KEYS[1] session, KEYS[2] asset. ARGV[1] length.
var luaSetLength = goredis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'len', 'off')
if not cur[1] then return {2} end
local len, want = tonumber(cur[1]), tonumber(ARGV[1])
if len >= 0 then
	if len == want then return {1} end
	return {3}
end
if want < tonumber(cur[2]) then return {3} end
redis.call('HSET', KEYS[1], 'len', ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], 'size', ARGV[1]) end
return {1}
`)

// luaDelete removes a session, its parts and lease, soft-deletes its asset
// and answers {1, flat session hash as it was}.
// KEYS[1] session, KEYS[2] parts, KEYS[3] lease, KEYS[4] asset, optional
// KEYS[5] expiry set. ARGV[1] session id, ARGV[2] the token of the lease
// the caller must still hold ("" for none: {4} when it does not).
var luaDelete = goredis.NewScript(`
local s = redis.call('HGETALL', KEYS[1])
if #s == 0 then return {2} end
if ARGV[2] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[2] then return {4} end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('HSET', KEYS[4], 'deleted', '1') end
if KEYS[5] then redis.call('ZREM', KEYS[5], ARGV[1]) end
return {1, s}
`)

// luaParts answers {1, parts} or {2} for an unknown session.
// KEYS[1] session, KEYS[2] parts.
var luaParts = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {2} end
return {1, redis.call('LRANGE', KEYS[2], 0, -1)}
`)

// luaSetDuration records a probe result if the asset hash is the asset.
// KEYS[1] asset. ARGV[1] asset id, ARGV[2] duration.
var luaSetDuration = goredis.NewScript(`
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return {2} end
redis.call('HSET', KEYS[1], 'dur', ARGV[2])
return {1}
`)

// luaClaim moves due retries from the delayed set into the stream, makes
// sure the consumer group exists, and reclaims one entry idle longer than
// the limit. Answers {1, id, flat fields} or {2} when nothing was reclaimed.
// KEYS[1] stream, KEYS[2] delayed set. ARGV[1] group, [2] consumer,
// [3] min idle ms.
var luaClaim = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 100)
for _, m in ipairs(due) do
	local j = cjson.decode(m)
	if j.s then
		redis.call('XADD', KEYS[1], '*', 'asset', '', 'attempts', tostring(j.n), 'sid', j.s, 'verify', '1', 'since', j.t)
	else
		redis.call('XADD', KEYS[1], '*', 'asset', j.a, 'attempts', tostring(j.n))
	end
	redis.call('ZREM', KEYS[2], m)
end
` + luaReclaim)

// luaReclaim is the tail of a claim script: it makes sure the consumer
// group exists and reclaims one entry idle longer than the limit. Answers
// {1, id, flat fields} or {2}. Keys and arguments as luaClaim's.
const luaReclaim = `
local cursor = '0-0'
for _ = 1, 100 do
	local r = redis.pcall('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor, 'COUNT', 1)
	if type(r) == 'table' and r.err then
		if string.find(r.err, 'NOGROUP', 1, true) then
			redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
			return {2}
		end
		return r
	end
	local e = r[2][1]
	if e then
		return {1, e[1], e[2]}
	end
	cursor = r[1]
	if cursor == '0-0' then break end
end
return {2}
`

// luaAck removes a finished job. KEYS[1] stream. ARGV[1] group, [2] id.
var luaAck = goredis.NewScript(`
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return {1}
`)

// luaRetry acknowledges a job and schedules it again after a delay, unless
// it is no longer pending (another consumer finished it).
// KEYS[1] stream, KEYS[2] delayed set. ARGV[1] group, [2] id, [3] delay
// ms, [4] member (JSON {a: asset, n: attempts, id: old id}).
var luaRetry = goredis.NewScript(`
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return {2} end
redis.call('XDEL', KEYS[1], ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[4])
return {1}
`)

// luaDead moves a pending job to the dead-letter stream.
// KEYS[1] stream, KEYS[2] dead stream. ARGV[1] group, [2] id, [3] asset,
// [4] attempts, [5] reason, [6] dead stream MAXLEN.
var luaDead = goredis.NewScript(`
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return {2} end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'asset', ARGV[3], 'attempts', ARGV[4], 'reason', ARGV[5])
return {1}
`)

// luaCreateKey stores an API key unless its id or hash is taken.
// KEYS[1] key hash by id, KEYS[2] id by secret hash, KEYS[3] set of ids.
// ARGV[1] id, then field/value pairs.
var luaCreateKey = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return {7} end
redis.call('HSET', KEYS[1], unpack(ARGV, 2, #ARGV))
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return {1}
`)

// luaKeyByHash answers {1, flat key hash} or {2}.
// KEYS[1] id by secret hash. ARGV[1] prefix of key hashes by id.
var luaKeyByHash = goredis.NewScript(`
local id = redis.call('GET', KEYS[1])
if not id then return {2} end
local k = redis.call('HGETALL', ARGV[1] .. id)
if #k == 0 then return {2} end
return {1, k}
`)

// luaRevokeKey marks a key revoked and publishes its hash on ARGV[1] in
// the same step, so no revocation is stored without its announcement.
// KEYS[1] key hash by id.
var luaRevokeKey = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {2} end
redis.call('HSET', KEYS[1], 'revoked', '1')
redis.call('PUBLISH', ARGV[1], redis.call('HGET', KEYS[1], 'hash'))
return {1}
`)

// luaKeys answers {1, {flat key hash}...}. KEYS[1] set of ids. ARGV[1]
// prefix of key hashes by id.
var luaKeys = goredis.NewScript(`
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
	local k = redis.call('HGETALL', ARGV[1] .. id)
	if #k > 0 then out[#out + 1] = k end
end
return {1, out}
`)
