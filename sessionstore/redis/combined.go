package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roughy/ingest/sessionstore"
)

// Scripts made of two older ones (each wrapped as a local function of its
// KEYS and ARGV, its text unchanged), so that a creation and a completion
// are one round trip each. The older scripts stay as they are: a node of
// the last version still sends them.

// luaQuotaRefused is luaCreateReserved's answer when the quota refuses:
// {9, limit, max, used, want}.
const luaQuotaRefused = 9

// luaCreateReserved stores an upload (luaCreate) and makes its quota hold
// (luaQuotaReserve) in one step; a refusal takes back what the creation
// wrote (none of it existed before) and leaves no index entry.
// KEYS[1..3] the account's quota usage, holds, stored; KEYS[4] the quota
// index; KEYS[5...] luaCreate's. ARGV[1..5] luaQuotaReserve's; ARGV[6] the
// index score, ARGV[7] the index member; ARGV[8...] luaCreate's.
var luaCreateReserved = goredis.NewScript(luaCreateReservedSrc)

const luaCreateReservedSrc = `local function create(KEYS, ARGV)` + luaCreateSrc + `end
local function reserve(KEYS, ARGV)` + luaQuotaReserveSrc + `end
local ck, ca = {}, {}
for i = 5, #KEYS do ck[#ck + 1] = KEYS[i] end
for i = 8, #ARGV do ca[#ca + 1] = ARGV[i] end
local made = create(ck, ca)
if made[1] ~= 1 then return made end
local q = reserve({KEYS[1], KEYS[2], KEYS[3]}, {ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]})
if q[1] ~= 0 then
	redis.call('DEL', ck[1], ck[2])
	local refIdx, zIdx = tonumber(ca[1]), tonumber(ca[2])
	if refIdx > 0 then redis.call('DEL', ck[refIdx]) end
	if zIdx > 0 then redis.call('ZREM', ck[zIdx], ca[3]) end
	return {9, q[2], q[3], q[4], q[5]}
end
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[7])
return {1}
`

// luaQueued wraps a script (src, run as a local function of the keys and
// arguments after the first two and five) so that, when it answers 1, the
// event is queued for each of the account's endpoints subscribed to it,
// in the same step: one round trip where reading the endpoints first was
// another. Standalone only: the endpoints' records are read by a name the
// script makes, not one it is given. The job is the text
// EnqueueWebhookEvent stores for an event to be verified (redisHookJob's
// JSON; no pending record: that is written once the change is verified).
// KEYS[1] the account's endpoint set, KEYS[2] the delivery stream,
// KEYS[3...] the wrapped script's. ARGV[1] the account, ARGV[2] the event
// type, ARGV[3] the event as JSON, ARGV[4] the queueing time as JSON,
// ARGV[5] the endpoint key prefix, ARGV[6...] the wrapped script's.
func luaQueued(src string) *goredis.Script {
	return goredis.NewScript(`local function wrapped(KEYS, ARGV)` + src + `end
local ck, ca = {}, {}
for i = 3, #KEYS do ck[#ck + 1] = KEYS[i] end
for i = 6, #ARGV do ca[#ca + 1] = ARGV[i] end
local out = wrapped(ck, ca)
if out[1] ~= 1 then return out end
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
	local raw = redis.call('GET', ARGV[5] .. id)
	if raw then
		local h = cjson.decode(raw)
		if h.Account == ARGV[1] and type(h.Events) == 'table' then
			for _, e in ipairs(h.Events) do
				if e == ARGV[2] then
					redis.call('XADD', KEYS[2], '*', 'job', '{"h":' .. cjson.encode(id) .. ',"e":' .. ARGV[3] .. ',"n":0,"s":' .. ARGV[4] .. '}')
					break
				end
			end
		end
	end
end
return out
`)
}

// luaCreateQueued is luaCreateReserved with the creation's event
// (luaQueued); luaCommitQueued is luaCommitSettle with the completion's.
var (
	luaCreateQueued = luaQueued(luaCreateReservedSrc)
	luaCommitQueued = luaQueued(luaCommitSettleSrc)
)

// luaCommitSettle is luaCommit, then, when it completed the upload,
// luaQuotaSettle of its hold at the new offset and the hold's index entry
// dropped. KEYS[1..6] luaCommit's (standalone), KEYS[7..9] the account's
// quota usage, holds, stored, KEYS[10] the quota index. ARGV[1] the
// upload id, ARGV[2] its index member, ARGV[3...] luaCommit's.
var luaCommitSettle = goredis.NewScript(luaCommitSettleSrc)

const luaCommitSettleSrc = `local function commit(KEYS, ARGV)` + luaCommitSrc + `end
local function settle(KEYS, ARGV)` + luaQuotaSettleSrc + `end
local ca = {}
for i = 3, #ARGV do ca[#ca + 1] = ARGV[i] end
local out = commit({KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}, ca)
if out[1] ~= 1 or ca[8] ~= '1' then return out end
settle({KEYS[7], KEYS[8], KEYS[9]}, {ARGV[1], ca[3]})
redis.call('ZREM', KEYS[10], ARGV[2])
return out
`

// CreateReserved stores the upload and its quota hold with one script
// and, when c has an event to be verified (the service's), queues it in
// the same script (luaCreateQueued). Another event is queued first, a
// round trip of its own. On Cluster the quota and the endpoints live in
// other slots: the event is queued first (an event marked Verify whose
// change never happens is dropped at delivery), then ReserveQuota, then
// CreateUpload, the hold released again if the creation fails.
func (r *Store) CreateReserved(ctx context.Context, c sessionstore.Creation) error {
	s := c.Session
	queued := c.Event != nil && c.Event.Verify && !r.cluster
	if c.Event != nil && !queued {
		if _, err := r.EnqueueWebhookEvent(ctx, s.Account, *c.Event); err != nil {
			return err
		}
	}
	if r.cluster {
		return r.createReservedApart(ctx, c)
	}
	if s.NextPart < 1 {
		s.NextPart = 1
	}
	keys := append(redisQuotaKeys(s.Account), redisQuotaIndex)
	ckeys, cargs := redisCreateArgs(s, c.Asset)
	keys = append(keys, ckeys...)
	d := c.Defaults
	args := []any{s.ID, c.Reserve, max(d.BytesStored, 0), max(d.Uploads, 0), max(d.BytesReserved, 0),
		strconv.FormatInt(time.Now().UnixMilli(), 10), redisQuotaMember(s.Account, s.ID)}
	args = append(args, cargs...)
	script := luaCreateReserved
	if queued {
		ekeys, eargs, err := redisQueuedArgs(s.Account, *c.Event)
		if err != nil {
			return err
		}
		keys, args, script = append(ekeys, keys...), append(eargs, args...), luaCreateQueued
	}
	start := time.Now()
	res, err := script.Run(ctx, r.client, keys, args...).Result()
	if out, ok := res.([]any); ok && err == nil && len(out) == 5 {
		if code, _ := out[0].(int64); code == luaQuotaRefused {
			r.observeQuota(start, nil)
			qe := &sessionstore.QuotaError{}
			qe.Limit, _ = out[1].(string)
			qe.Max, _ = out[2].(int64)
			qe.Used, _ = out[3].(int64)
			qe.Want, _ = out[4].(int64)
			return qe
		}
	}
	_, err = r.scriptAnswer("create upload", start, res, err)
	return err
}

// createReservedApart is CreateReserved on Cluster: ReserveQuota, then
// CreateUpload, the hold released again if the creation fails.
func (r *Store) createReservedApart(ctx context.Context, c sessionstore.Creation) error {
	s := c.Session
	if err := r.ReserveQuota(ctx, s.Account, s.ID, c.Reserve, c.Defaults); err != nil {
		return err
	}
	if err := r.CreateUpload(ctx, s, c.Asset); err != nil {
		// The hold is this creation's unless the session exists (the
		// same creation again): that one keeps its own.
		if _, serr := r.Session(ctx, s.ID); !errors.Is(err, sessionstore.ErrExists) || serr != nil {
			_ = r.ReleaseQuota(context.WithoutCancel(ctx), s.Account, s.ID)
		}
		return err
	}
	return nil
}

// redisQueuedArgs are the keys and arguments luaCreateQueued puts before
// luaCreateReserved's to queue ev for account's endpoints.
func redisQueuedArgs(account string, ev sessionstore.WebhookEvent) ([]string, []any, error) {
	evJSON, err := json.Marshal(ev)
	if err != nil {
		return nil, nil, fmt.Errorf("sessionstore: redis: create upload: event: %w", err)
	}
	since, err := json.Marshal(time.Now())
	if err != nil {
		return nil, nil, fmt.Errorf("sessionstore: redis: create upload: event: %w", err)
	}
	return []string{redisHookAccount + account, redisHookStream},
		[]any{account, ev.Type, string(evJSON), string(since), redisHookPrefix}, nil
}

// settlesInScript says whether c's commit script settles its quota hold
// (luaCommitSettle): a completing Settle commit whose account's quota keys
// are in its reach (not on Cluster) and known (the lease carries the
// session).
func (r *Store) settlesInScript(l sessionstore.Lease, c sessionstore.Commit) bool {
	return c.Complete && c.Settle && !r.cluster && l.Session.Account != ""
}

// redisCreateArgs are luaCreate's keys and arguments for s and a on
// standalone (every key in the script's reach).
func redisCreateArgs(s sessionstore.Session, a sessionstore.Asset) ([]string, []any) {
	keys := []string{redisSessionKey(s.ID), redisAssetKey(s.ID)}
	refIdx, zIdx := 0, 0
	if a.ID != "" {
		keys = append(keys, redisAssetRefKey(a.ID))
		refIdx = len(keys)
	}
	if !s.ExpiresAt.IsZero() {
		keys = append(keys, redisExpiryKey)
		zIdx = len(keys)
	}
	sf := redisSessionFields(s)
	args := append([]any{refIdx, zIdx, s.ID, strconv.FormatInt(s.ExpiresAt.UnixMilli(), 10), len(sf)}, sf...)
	if a.ID != "" {
		args = append(args, redisAssetFields(a)...)
	}
	return keys, args
}

// commitScript is the script, keys and arguments of Commit (keys:
// luaCommit's), and whether the script settles the quota: when c settles
// it and the quota's keys are in the script's reach (not on Cluster; the
// account read with the lease), luaCommitSettle does, in the same round
// trip.
func (r *Store) commitScript(l sessionstore.Lease, c sessionstore.Commit, keys []string) (*goredis.Script, []string, []any, bool) {
	id := l.SessionID
	length := c.Length
	if length < 0 {
		length = -1
	}
	args := make([]any, 0, 16+len(c.Parts))
	account := l.Session.Account
	settles := r.settlesInScript(l, c)
	if settles {
		keys = append(keys, redisQuotaKeys(account)...)
		keys = append(keys, redisQuotaIndex)
		args = append(args, id, redisQuotaMember(account, id))
	}
	args = append(args, strconv.FormatInt(l.Token, 10), strconv.FormatInt(c.ExpectOffset, 10),
		strconv.FormatInt(c.NewOffset, 10), c.HashState, redisBool(c.Storage != nil), c.Storage,
		strconv.FormatInt(length, 10), redisBool(c.Complete), c.SHA256, id,
		redisFmtTime(c.ExpiresAt), strconv.FormatInt(c.ExpiresAt.UnixMilli(), 10),
		strconv.FormatInt(redisMillis(max(c.ExtendLease, 0)), 10), redisBool(c.Rewind))
	for _, p := range c.Parts {
		args = append(args, redisEncodePart(p))
	}
	if settles {
		return luaCommitSettle, keys, args, true
	}
	return luaCommit, keys, args, false
}
