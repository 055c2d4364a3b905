package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roughy/ingest/sessionstore"
)

// CreateUpload stores s and a (a.ID "" stores the session only) in one
// script; ErrExists when the session id or the asset id is taken.
func (r *Store) CreateUpload(ctx context.Context, s sessionstore.Session, a sessionstore.Asset) error {
	if s.NextPart < 1 {
		s.NextPart = 1
	}
	keys := []string{redisSessionKey(s.ID), redisAssetKey(s.ID)}
	refIdx, zIdx := 0, 0
	preclaimed := false
	if a.ID != "" {
		if !r.cluster || a.ID == s.ID {
			keys = append(keys, redisAssetRefKey(a.ID))
			refIdx = len(keys)
		} else {
			// Another slot: claim the asset id first, undo on failure.
			ok, err := r.client.SetNX(ctx, redisAssetRefKey(a.ID), s.ID, 0).Result()
			if err != nil {
				return redisErr("create upload", err)
			}
			if !ok {
				return fmt.Errorf("sessionstore: redis: create upload: asset %q: %w", a.ID, sessionstore.ErrExists)
			}
			preclaimed = true
		}
	}
	score := strconv.FormatInt(s.ExpiresAt.UnixMilli(), 10)
	if !s.ExpiresAt.IsZero() {
		if !r.cluster {
			keys = append(keys, redisExpiryKey)
			zIdx = len(keys)
		} else if err := r.client.ZAddNX(ctx, redisExpiryKey, goredis.Z{Score: float64(s.ExpiresAt.UnixMilli()), Member: s.ID}).Err(); err != nil {
			// Added before the session: a stray entry is dropped by Expired,
			// a missing one would leak the session.
			return redisErr("create upload", err)
		}
	}
	sf := redisSessionFields(s)
	args := append([]any{refIdx, zIdx, s.ID, score, len(sf)}, sf...)
	if a.ID != "" {
		args = append(args, redisAssetFields(a)...)
	}
	_, err := r.runScript(ctx, "create upload", luaCreate, keys, args...)
	if err != nil && preclaimed {
		luaUnref.Run(context.WithoutCancel(ctx), r.client, []string{redisAssetRefKey(a.ID)}, s.ID)
	}
	return err
}

// Session returns a session; ErrNotFound when unknown or deleted.
func (r *Store) Session(ctx context.Context, id string) (sessionstore.Session, error) {
	return r.session(ctx, id, "session", luaSession)
}

// OffsetSession is Session for offset retrieval: the same round trip
// also increments the head fence (one write per HEAD, not waited for by
// replicas: a fence lost in a failover only matters to the requests in
// flight across it).
func (r *Store) OffsetSession(ctx context.Context, id string) (sessionstore.Session, error) {
	return r.session(ctx, id, "offset session", luaOffsetSession)
}

// session runs script, luaSession or luaOffsetSession.
func (r *Store) session(ctx context.Context, id, op string, script *goredis.Script) (sessionstore.Session, error) {
	// One round trip: the lease key shares the session's slot. A
	// script, not a pipeline: it runs like every other store call
	// (retried on a connection a Redis restart left dead).
	out, err := r.runScript(ctx, op, script, []string{redisSessionKey(id), redisLeaseKey(id)})
	if errors.Is(err, sessionstore.ErrNotFound) {
		return sessionstore.Session{}, fmt.Errorf("sessionstore: redis: session %q: %w", id, sessionstore.ErrNotFound)
	}
	if err != nil {
		return sessionstore.Session{}, err
	}
	m := redisFlatMap(out[0])
	leased, _ := out[1].(int64)
	s, err := redisDecodeSession(m)
	s.Leased = err == nil && leased > 0
	return s, err
}

// Parts returns the committed parts in commit order.
func (r *Store) Parts(ctx context.Context, id string) ([]sessionstore.Part, error) {
	out, err := r.runScript(ctx, "parts", luaParts, []string{redisSessionKey(id), redisPartsKey(id)})
	if err != nil {
		return nil, err
	}
	list, _ := out[0].([]any)
	parts := make([]sessionstore.Part, 0, len(list))
	for _, v := range list {
		s, _ := v.(string)
		p, err := redisDecodePart(s)
		if err != nil {
			return nil, err
		}
		parts = append(parts, p)
	}
	return parts, nil
}

// SetLength sets a deferred length once (and the asset's size).
func (r *Store) SetLength(ctx context.Context, id string, length int64) error {
	_, err := r.runScript(ctx, "set length", luaSetLength, []string{redisSessionKey(id), redisAssetKey(id)},
		strconv.FormatInt(length, 10))
	return err
}

// AcquireLease takes the lease for ttl with a new fencing token and
// reserves parts part numbers, in one script. A lease whose holder node is
// dead is taken over in the same script on standalone and Sentinel. On
// Cluster the holder's liveness key is in another slot: a refusal is
// followed by a liveness check and, if the holder is dead, a second run
// that takes over exactly the lease it was refused by (compare-and-set on
// its token). Only a contended acquisition pays those round trips.
func (r *Store) AcquireLease(ctx context.Context, id string, ttl time.Duration, parts int32) (sessionstore.Lease, error) {
	return r.acquireLease(ctx, id, ttl, parts, "")
}

// AcquireLeaseFenced is AcquireLease refused with ErrFenced when the
// upload's head fence has grown past fence; the same script checks it.
func (r *Store) AcquireLeaseFenced(ctx context.Context, id string, ttl time.Duration, parts int32, fence int64) (sessionstore.Lease, error) {
	return r.acquireLease(ctx, id, ttl, parts, strconv.FormatInt(fence, 10))
}

// acquireLease takes the lease; fence "" checks no head fence.
func (r *Store) acquireLease(ctx context.Context, id string, ttl time.Duration, parts int32, fence string) (sessionstore.Lease, error) {
	start := time.Now()
	out, holder, token, err := r.acquireOnce(ctx, id, ttl, parts, "", fence)
	if errors.Is(err, sessionstore.ErrLocked) && r.cluster && holder != "" && holder != r.node {
		live, lerr := r.nodeLive(ctx, holder)
		if lerr != nil {
			return sessionstore.Lease{}, lerr
		}
		if !live {
			start = time.Now()
			out, holder, token, err = r.acquireOnce(ctx, id, ttl, parts, token, fence)
		}
	}
	if errors.Is(err, sessionstore.ErrLocked) {
		tok, _ := strconv.ParseInt(token, 10, 64)
		return sessionstore.Lease{}, &sessionstore.LockedError{SessionID: id, Holder: holder, Token: tok}
	}
	if err != nil {
		return sessionstore.Lease{}, err
	}
	tok, _ := out[0].(int64)
	first, _ := out[1].(int64)
	sess, err := redisDecodeSession(redisFlatMap(out[2]))
	if err != nil {
		return sessionstore.Lease{}, err
	}
	// The lease ends in Redis ttl after the script ran, so start+ttl is
	// never later than the real end.
	return sessionstore.Lease{SessionID: id, Token: tok, FirstPart: int32(first), Parts: parts, ExpiresAt: start.Add(ttl),
		Holder: r.node, Session: sess}, nil
}

// RenewLease extends l for ttl; ErrLeaseLost when it expired, was
// released or taken over.
func (r *Store) RenewLease(ctx context.Context, l sessionstore.Lease, ttl time.Duration) (sessionstore.Lease, error) {
	start := time.Now()
	if _, err := r.runScript(ctx, "renew lease", luaRenew, []string{redisLeaseKey(l.SessionID)},
		strconv.FormatInt(l.Token, 10), max(redisMillis(ttl), 1)); err != nil {
		return sessionstore.Lease{}, err
	}
	l.ExpiresAt = start.Add(ttl)
	return l, nil
}

// DropLease drops the upload's lease if node holds it with token (see
// Store).
func (r *Store) DropLease(ctx context.Context, id, node string, token int64) error {
	_, err := r.runScript(ctx, "drop lease", luaDropLease, []string{redisSessionKey(id), redisLeaseKey(id)},
		node, strconv.FormatInt(token, 10))
	return err
}

// ReleaseLease drops l if it is still the current lease.
func (r *Store) ReleaseLease(ctx context.Context, l sessionstore.Lease) error {
	_, err := r.runScript(ctx, "release lease", luaRelease, []string{redisLeaseKey(l.SessionID)},
		strconv.FormatInt(l.Token, 10))
	return err
}

// Commit applies c in one script: one round trip per committed part.
//
// A commit with ExpiresAt moves the session's expiry. On standalone and
// Sentinel the script moves its entry in the expiry set too. On Cluster
// the set lives in another slot and is not touched (that would cost a
// second round trip per part): its entry keeps the old, earlier score, and
// Expired, which reads every due session's real ExpiresAt anyway, moves
// such entries to their real score instead of listing them.
//
// On standalone and Sentinel the completing commit adds the probe job in
// the same script. On Cluster the stream lives in another slot, so the job
// is added first, by a second round trip, marked "verify" with the session
// id: if the node dies before the script, or the script refuses the
// commit, the job finds no ready asset and is dropped (see ClaimProbe); if
// the script runs, the job is already there. No crash window loses a job.
func (r *Store) Commit(ctx context.Context, l sessionstore.Lease, c sessionstore.Commit) (sessionstore.Session, error) {
	id := l.SessionID
	// A completion that settles in the script queues its event there too.
	queued := c.Event != nil && c.Event.Verify && r.settlesInScript(l, c)
	if err := r.commitBefore(ctx, id, c, queued); err != nil {
		return sessionstore.Session{}, err
	}
	script, keys, args, settled, err := r.commitCall(l, c, queued)
	if err != nil {
		return sessionstore.Session{}, err
	}
	out, err := r.runScriptWaited(ctx, "commit", redisSessionKey(id), script, keys, args...)
	if err != nil {
		return sessionstore.Session{}, err
	}
	s, err := redisDecodeSession(redisFlatMap(out[0]))
	if err != nil {
		return sessionstore.Session{}, err
	}
	if c.Complete && c.Settle && !settled {
		// The commit is applied whatever this answers: a hold left
		// unsettled is settled by the janitor (QuotaHolds finds it).
		_ = r.SettleQuota(ctx, s.Account, s.ID, s.Offset)
	}
	if oldExp, _ := out[1].(string); r.cluster && oldExp == "" && !c.ExpiresAt.IsZero() && !s.Completed {
		// The session had no expiry, so the expiry set has no entry that
		// Expired could refresh: add one (rare; the proxy always creates
		// uploads with an expiry).
		if err := r.client.ZAdd(ctx, redisExpiryKey, goredis.Z{Score: float64(c.ExpiresAt.UnixMilli()), Member: id}).Err(); err != nil {
			return sessionstore.Session{}, redisErr("commit: expiry", err)
		}
	}
	return s, nil
}

// commitCall is the script, keys and arguments of Commit (commitScript),
// with c's event queued by the script when queued, and whether the script
// settles the quota.
func (r *Store) commitCall(l sessionstore.Lease, c sessionstore.Commit, queued bool) (*goredis.Script, []string, []any, bool, error) {
	id := l.SessionID
	keys := []string{redisSessionKey(id), redisPartsKey(id), redisLeaseKey(id), redisAssetKey(id)}
	if !r.cluster {
		keys = append(keys, redisExpiryKey, redisProbeStream)
	}
	script, keys, args, settled := r.commitScript(l, c, keys)
	if !queued {
		return script, keys, args, settled, nil
	}
	ekeys, eargs, err := redisQueuedArgs(l.Session.Account, *c.Event)
	if err != nil {
		return nil, nil, nil, false, err
	}
	return luaCommitQueued, append(ekeys, keys...), append(eargs, args...), settled, nil
}

// commitBefore does what goes before the commit script: c's event queued
// (unless the script queues it), and on Cluster a completion's probe job
// (the probe stream lives in another slot).
func (r *Store) commitBefore(ctx context.Context, id string, c sessionstore.Commit, queued bool) error {
	if c.Event != nil && !queued {
		if _, err := r.EnqueueWebhookEvent(ctx, c.Event.Asset.Account, *c.Event); err != nil {
			return err
		}
	}
	if r.cluster && c.Complete {
		return r.addVerifyJob(ctx, id)
	}
	return nil
}

// addVerifyJob adds the probe job of a Cluster completion (see Commit),
// waited for as the commit is (Options): a job lost to a failover
// would leave the asset unprobed.
func (r *Store) addVerifyJob(ctx context.Context, id string) error {
	add := func(p goredis.Cmdable) *goredis.StringCmd {
		return p.XAdd(ctx, &goredis.XAddArgs{Stream: redisProbeStream,
			Values: []any{"asset", "", "attempts", "0", "sid", id, "verify", "1"}})
	}
	if !r.waits() {
		if err := add(r.client).Err(); err != nil {
			return redisErr("commit: probe job", err)
		}
		return nil
	}
	var cmd *goredis.StringCmd
	wait, err := r.pipelineWaited(ctx, redisProbeStream, func(p goredis.Pipeliner) { cmd = add(p) })
	if err == nil {
		err = cmd.Err()
	}
	if err != nil {
		return redisErr("commit: probe job", err)
	}
	return r.checkWait("commit: probe job", wait)
}

// DeleteUpload removes the session, its parts and lease and soft-deletes
// its asset, returning the session as it was.
func (r *Store) DeleteUpload(ctx context.Context, id string) (sessionstore.Session, error) {
	return r.deleteUpload(ctx, id, "")
}

// DeleteUploadLeased deletes the upload while l is its current lease, in
// the same script.
func (r *Store) DeleteUploadLeased(ctx context.Context, l sessionstore.Lease) (sessionstore.Session, error) {
	return r.deleteUpload(ctx, l.SessionID, strconv.FormatInt(l.Token, 10))
}

// deleteUpload runs the delete script; token "" deletes whatever the lease.
func (r *Store) deleteUpload(ctx context.Context, id, token string) (sessionstore.Session, error) {
	keys := []string{redisSessionKey(id), redisPartsKey(id), redisLeaseKey(id), redisAssetKey(id)}
	if !r.cluster {
		keys = append(keys, redisExpiryKey)
	}
	out, err := r.runScript(ctx, "delete upload", luaDelete, keys, id, token)
	if err != nil {
		return sessionstore.Session{}, err
	}
	s, err := redisDecodeSession(redisFlatMap(out[0]))
	if err != nil {
		return sessionstore.Session{}, err
	}
	if r.cluster {
		// Best effort: Expired drops entries of gone sessions anyway.
		r.client.ZRem(context.WithoutCancel(ctx), redisExpiryKey, id)
	}
	return s, nil
}

// Expired lists up to limit uncompleted sessions whose ExpiresAt is before
// now. Entries of sessions that completed or are gone are dropped from the
// expiry set on the way.
func (r *Store) Expired(ctx context.Context, now time.Time, limit int) ([]sessionstore.Session, error) {
	if limit <= 0 {
		return nil, nil
	}
	batch := int64(limit + 16)
	var out []sessionstore.Session
	var offset int64
	for len(out) < limit {
		ids, err := r.client.ZRangeByScore(ctx, redisExpiryKey, &goredis.ZRangeBy{
			Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Offset: offset, Count: batch,
		}).Result()
		if err != nil {
			return nil, redisErr("expired", err)
		}
		if len(ids) == 0 {
			break
		}
		cmds := make([]*goredis.MapStringStringCmd, len(ids))
		_, err = r.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for i, id := range ids {
				cmds[i] = p.HGetAll(ctx, redisSessionKey(id))
			}
			return nil
		})
		if err != nil {
			return nil, redisErr("expired", err)
		}
		var stale []any
		var moved []goredis.Z
		out, stale, moved, err = sortExpired(ids, cmds, now, out, limit)
		if err != nil {
			return nil, err
		}
		if err := r.fixExpirySet(ctx, stale, moved); err != nil {
			return nil, err
		}
		if int64(len(ids)) < batch {
			break
		}
		// Removed and moved entries left the range; the others are still
		// in it, before the next batch.
		offset += int64(len(ids) - len(stale) - len(moved))
	}
	return out, nil
}

// sortExpired sorts one batch of expiry-set entries (ids, with their
// sessions' hashes in cmds): expired sessions are appended to out up to
// limit; entries of sessions that completed or are gone are stale; those
// whose session now expires after now are moved.
func sortExpired(ids []string, cmds []*goredis.MapStringStringCmd, now time.Time, out []sessionstore.Session, limit int) ([]sessionstore.Session, []any, []goredis.Z, error) {
	var stale []any
	var moved []goredis.Z
	for i, cmd := range cmds {
		m := cmd.Val()
		if len(m) == 0 || m[rsDone] == "1" || m[rsExpires] == "" {
			stale = append(stale, ids[i])
			continue
		}
		s, err := redisDecodeSession(m)
		if err != nil {
			return nil, nil, nil, err
		}
		switch {
		case !s.ExpiresAt.Before(now):
			// A commit slid the expiry (Cluster: the set was not updated
			// with it).
			moved = append(moved, goredis.Z{Score: float64(s.ExpiresAt.UnixMilli()), Member: ids[i]})
		case len(out) < limit:
			out = append(out, s)
		}
	}
	return out, stale, moved, nil
}

// fixExpirySet drops the expiry-set entries of sessions that completed or
// are gone, and moves those whose session expires later than their score
// says, in one round trip. A move only raises the score of an entry that
// is still there (ZADD XX GT): a concurrent delete or completion that
// removed it wins (GT needs Redis 6.2, as XAUTOCLAIM does).
func (r *Store) fixExpirySet(ctx context.Context, stale []any, moved []goredis.Z) error {
	if len(stale) == 0 && len(moved) == 0 {
		return nil
	}
	_, err := r.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		if len(stale) > 0 {
			p.ZRem(ctx, redisExpiryKey, stale...)
		}
		if len(moved) > 0 {
			p.ZAddArgs(ctx, redisExpiryKey, goredis.ZAddArgs{XX: true, GT: true, Members: moved})
		}
		return nil
	})
	if err != nil {
		return redisErr("expired", err)
	}
	return nil
}

// Asset returns an asset; ErrNotFound when unknown or deleted. The proxy
// gives a session and its asset the same id, so the first read finds it;
// other ids go through the asset id index.
func (r *Store) Asset(ctx context.Context, id string) (sessionstore.Asset, error) {
	a, err := r.AssetRecord(ctx, id)
	if err == nil && a.Deleted {
		return sessionstore.Asset{}, fmt.Errorf("sessionstore: redis: asset %q: %w", id, sessionstore.ErrNotFound)
	}
	return a, err
}

// AssetRecord returns an asset as stored, a deleted one too.
func (r *Store) AssetRecord(ctx context.Context, id string) (sessionstore.Asset, error) {
	m, err := r.client.HGetAll(ctx, redisAssetKey(id)).Result()
	if err != nil {
		return sessionstore.Asset{}, redisErr("asset", err)
	}
	if m[raID] != id {
		sid, err := r.client.Get(ctx, redisAssetRefKey(id)).Result()
		if errors.Is(err, goredis.Nil) || (err == nil && sid == id) {
			return sessionstore.Asset{}, fmt.Errorf("sessionstore: redis: asset %q: %w", id, sessionstore.ErrNotFound)
		}
		if err != nil {
			return sessionstore.Asset{}, redisErr("asset", err)
		}
		if m, err = r.client.HGetAll(ctx, redisAssetKey(sid)).Result(); err != nil {
			return sessionstore.Asset{}, redisErr("asset", err)
		}
	}
	if m[raID] != id {
		return sessionstore.Asset{}, fmt.Errorf("sessionstore: redis: asset %q: %w", id, sessionstore.ErrNotFound)
	}
	return redisDecodeAsset(m)
}
