package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roughy/ingest/sessionstore"
)

// Verification of Cluster completion jobs (see Commit): how long a claim
// waits for the commit that follows its job, how soon a job whose asset is
// not ready yet is looked at again, and when it is given up.
const (
	redisVerifyWait   = 250 * time.Millisecond
	redisVerifyRetry  = time.Second
	redisVerifyCutoff = 2 * time.Minute
)

// redisProbeQueue is the probe queue: its claims wait on XREADGROUP alone
// (a due retry waits for the next claim).
var redisProbeQueue = jobQueue{op: "probe", stream: redisProbeStream, delayed: redisProbeDelayed,
	group: redisProbeGroup, script: luaClaim}

// ClaimProbe hands out one probe job: first it moves due retries into the
// stream and reclaims an entry idle longer than reclaimAfter (one script),
// then it reads a new entry with XREADGROUP, blocking up to block. A
// Cluster completion job is handed out only once its asset is ready.
func (r *Store) ClaimProbe(ctx context.Context, consumer string, block, reclaimAfter time.Duration) (sessionstore.ProbeJob, error) {
	for range 8 {
		job, vals, err := r.claimEntry(ctx, consumer, block, reclaimAfter)
		if err != nil || vals["verify"] != "1" {
			return job, err
		}
		ok, err := r.verifyJob(ctx, &job, vals)
		if err != nil || ok {
			return job, err
		}
		block = 0 // that one was dropped or put off: look once more, no wait
	}
	return sessionstore.ProbeJob{}, fmt.Errorf("sessionstore: redis: claim probe: %w", sessionstore.ErrEmpty)
}

// claimEntry claims one probe stream entry (reclaimed or new) and answers
// it with its fields.
func (r *Store) claimEntry(ctx context.Context, consumer string, block, reclaimAfter time.Duration) (sessionstore.ProbeJob, map[string]string, error) {
	id, vals, err := redisProbeQueue.claim(ctx, r, consumer, block, reclaimAfter)
	if err != nil {
		return sessionstore.ProbeJob{}, nil, err
	}
	job, err := redisProbeJob(id, vals)
	return job, vals, err
}

// verifyJob decides a Cluster completion job: its asset is ready (ok, and
// job.AssetID is set), or the upload has no asset or never completed (the
// job is dropped), or the commit may still come (the job is put off by
// redisVerifyRetry, until redisVerifyCutoff after it was added). A job put
// off whose upload then completes is handed out besides the completion's
// own job: the asset is probed twice, which is harmless.
func (r *Store) verifyJob(ctx context.Context, job *sessionstore.ProbeJob, vals map[string]string) (bool, error) {
	sid := vals["sid"]
	deadline := time.Now().Add(redisVerifyWait)
	for {
		v, err := r.client.HMGet(ctx, redisAssetKey(sid), raID, raState).Result()
		if err != nil {
			return false, redisErr("claim probe: verify", err)
		}
		aid, _ := v[0].(string)
		if aid == "" {
			return false, r.dropJob(ctx, job.ID)
		}
		if state, _ := v[1].(string); state == sessionstore.StateReady {
			job.AssetID = aid
			return true, nil
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("sessionstore: redis: claim probe: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	// A put-off job comes back as a new entry: "since" keeps the first
	// entry's time (its id is milliseconds-sequence).
	since := vals["since"]
	if since == "" {
		since, _, _ = strings.Cut(job.ID, "-")
	}
	added, _ := strconv.ParseInt(since, 10, 64)
	if time.Since(time.UnixMilli(added)) > r.verifyCutoff {
		return false, r.dropJob(ctx, job.ID)
	}
	member, err := json.Marshal(redisRetryMember{Attempts: job.Attempts, ID: job.ID, Session: sid, Since: since})
	if err != nil {
		return false, fmt.Errorf("sessionstore: redis: claim probe: %w", err)
	}
	_, err = r.runScript(ctx, "claim probe: put off", luaRetry, []string{redisProbeStream, redisProbeDelayed},
		redisProbeGroup, job.ID, redisMillis(redisVerifyRetry), string(member))
	if errors.Is(err, sessionstore.ErrNotFound) {
		err = nil
	}
	return false, err
}

// dropJob removes a job that has nothing to probe.
func (r *Store) dropJob(ctx context.Context, id string) error {
	return redisProbeQueue.ack(ctx, r, "claim probe: drop", id)
}

func redisProbeJob(id string, vals map[string]string) (sessionstore.ProbeJob, error) {
	n, err := strconv.Atoi(vals["attempts"])
	if err != nil || (vals["asset"] == "" && vals["sid"] == "") {
		return sessionstore.ProbeJob{}, fmt.Errorf("sessionstore: redis: corrupt probe job %s: %v", id, vals)
	}
	return sessionstore.ProbeJob{ID: id, AssetID: vals["asset"], Attempts: n}, nil
}

// AckProbe records the duration on the asset, then removes the job. A
// crash between the two hands the job out again; recording is idempotent.
func (r *Store) AckProbe(ctx context.Context, job sessionstore.ProbeJob, durationSeconds string) error {
	_, err := r.runScript(ctx, "ack probe", luaSetDuration, []string{redisAssetKey(job.AssetID)}, job.AssetID, durationSeconds)
	if errors.Is(err, sessionstore.ErrNotFound) {
		// The asset id is not its session's id: find the session.
		sid, gerr := r.client.Get(ctx, redisAssetRefKey(job.AssetID)).Result()
		switch {
		case gerr == nil && sid != job.AssetID:
			_, err = r.runScript(ctx, "ack probe", luaSetDuration, []string{redisAssetKey(sid)}, job.AssetID, durationSeconds)
		case gerr == nil, errors.Is(gerr, goredis.Nil):
		default:
			return redisErr("ack probe", gerr)
		}
		if errors.Is(err, sessionstore.ErrNotFound) {
			err = nil // the asset is gone; the job is done all the same
		}
	}
	if err != nil {
		return err
	}
	return redisProbeQueue.ack(ctx, r, "ack probe", job.ID)
}

// redisRetryMember is a delayed job in roughy:{probe}:delayed; luaClaim
// decodes it with cjson. Session is set for a Cluster completion job that
// still needs verifying (see Store.Commit).
type redisRetryMember struct {
	Asset    string `json:"a"`
	Attempts int    `json:"n"`
	ID       string `json:"id"`
	Session  string `json:"s,omitempty"`
	Since    string `json:"t,omitempty"`
}

// RetryProbe acknowledges the job and schedules it with Attempts+1, ready
// after delay (measured on the Redis clock, shared by every node). A job
// that is no longer pending (another consumer finished it) is dropped.
func (r *Store) RetryProbe(ctx context.Context, job sessionstore.ProbeJob, delay time.Duration, reason string) error {
	member, err := json.Marshal(redisRetryMember{Asset: job.AssetID, Attempts: job.Attempts + 1, ID: job.ID})
	if err != nil {
		return fmt.Errorf("sessionstore: redis: retry probe: %w", err)
	}
	_, err = r.runScript(ctx, "retry probe", luaRetry, []string{redisProbeStream, redisProbeDelayed},
		redisProbeGroup, job.ID, redisMillis(delay), string(member))
	if errors.Is(err, sessionstore.ErrNotFound) {
		r.log.Info("sessionstore: redis: retried probe job was not pending", "job", job.ID, "asset", job.AssetID, "reason", reason)
		return nil
	}
	return err
}

// DeadProbe moves the job to the dead-letter stream with the reason.
func (r *Store) DeadProbe(ctx context.Context, job sessionstore.ProbeJob, reason string) error {
	_, err := r.runScript(ctx, "dead probe", luaDead, []string{redisProbeStream, redisProbeDead},
		redisProbeGroup, job.ID, job.AssetID, job.Attempts, reason, redisDeadMaxLen)
	if errors.Is(err, sessionstore.ErrNotFound) {
		r.log.Info("sessionstore: redis: dead probe job was not pending", "job", job.ID, "asset", job.AssetID, "reason", reason)
		return nil
	}
	return err
}

// DeadProbes lists the dead-letter stream, oldest first.
func (r *Store) DeadProbes(ctx context.Context) ([]sessionstore.DeadProbe, error) {
	msgs, err := r.client.XRange(ctx, redisProbeDead, "-", "+").Result()
	if err != nil {
		return nil, redisErr("dead probes", err)
	}
	out := make([]sessionstore.DeadProbe, 0, len(msgs))
	for _, m := range msgs {
		asset, _ := m.Values["asset"].(string)
		reason, _ := m.Values["reason"].(string)
		n, _ := m.Values["attempts"].(string)
		attempts, _ := strconv.Atoi(n)
		out = append(out, sessionstore.DeadProbe{AssetID: asset, Attempts: attempts, Reason: reason})
	}
	return out, nil
}
