package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roughy/ingest/sessionstore"
)

// Options tune a Redis store beyond its URL.
//
// Redis acknowledges a write once its primary applied it in memory: an
// asynchronous failover to a replica that had not received it, or a
// crash of the primary within the second its append-only file is fsynced
// in (appendfsync everysec), rolls the write back. WaitReplicas and
// WaitAOF make every commit, and every lease acquisition (a lease rolled
// back would hand its fencing token and part numbers out twice), wait for
// copies of it before it is answered.
type Options struct {
	// WaitReplicas is how many replicas must have received a commit
	// (WAIT; with WaitAOF, fsynced it to their append-only file) before
	// it counts as made. 0: none.
	WaitReplicas int
	// WaitAOF makes a commit also wait until the primary fsynced it to
	// its append-only file (WAITAOF, Redis 7.2 or later, appendonly yes).
	WaitAOF bool
	// WaitTimeout bounds the wait (at most MaxWaitTimeout). A commit not
	// acknowledged by then fails
	// with ErrUnavailable: it may still have been applied, as any commit
	// whose answer was lost.
	WaitTimeout time.Duration
}

// MaxWaitTimeout is the longest Options.WaitTimeout: the wait
// is read with the commit's answer, within the client's 3 s read timeout.
const MaxWaitTimeout = 2 * time.Second

// DefaultOptions returns the options `roughy serve --sessions redis`
// starts from: its --redis-wait-* flags' defaults are these values.
// Waiting for copies is off (WaitReplicas 0, WaitAOF false); a zero
// WaitTimeout takes the value here.
func DefaultOptions() Options {
	return Options{WaitTimeout: time.Second}
}

// waits reports whether commits wait for copies.
func (r *Store) waits() bool { return r.opt.WaitReplicas > 0 || r.opt.WaitAOF }

// checkOptions validates o and fills in its defaults; with WaitAOF it
// makes sure the server has WAITAOF and an append-only file, so that a
// setting the server cannot honour is refused when the store opens
// rather than failing every commit.
func (r *Store) checkOptions(ctx context.Context, o Options) error {
	if o.WaitReplicas < 0 {
		return fmt.Errorf("sessionstore: redis: wait for %d replicas: want 0 or more", o.WaitReplicas)
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = DefaultOptions().WaitTimeout
	}
	if o.WaitTimeout < time.Millisecond || o.WaitTimeout > MaxWaitTimeout {
		return fmt.Errorf("sessionstore: redis: wait timeout %v: want 1ms to %v", o.WaitTimeout, MaxWaitTimeout)
	}
	r.opt = o
	if !o.WaitAOF {
		return nil
	}
	info, err := r.client.Do(ctx, "COMMAND", "INFO", "WAITAOF").Slice()
	if err != nil {
		return redisErr("check WAITAOF", err)
	}
	if len(info) == 0 || info[0] == nil {
		version := "unknown version"
		if s, err := r.client.Info(ctx, "server").Result(); err == nil {
			version = redisInfoField(s, "redis_version")
		}
		return fmt.Errorf("sessionstore: redis: waiting for the append-only file needs WAITAOF (Redis 7.2 or later); the server (%s) does not have it", version)
	}
	persistence, err := r.client.Info(ctx, "persistence").Result()
	if err != nil {
		return redisErr("check WAITAOF", err)
	}
	if redisInfoField(persistence, "aof_enabled") != "1" {
		return errors.New("sessionstore: redis: waiting for the append-only file needs appendonly yes on the server")
	}
	return nil
}

// redisInfoField is the value of field in an INFO answer ("" if absent).
func redisInfoField(info, field string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v
		}
	}
	return ""
}

// runScriptWaited is runScript followed, when the store waits for copies,
// by WAIT or WAITAOF. Both go in one pipeline on the connection to the
// master of key: WAIT waits for the writes of its own connection only. A
// script that answered luaOK but whose write was not acknowledged in time
// fails with ErrUnavailable, and out is still its answer.
func (r *Store) runScriptWaited(ctx context.Context, op, key string, s *goredis.Script, keys []string, args ...any) ([]any, error) {
	if !r.waits() {
		return r.runScript(ctx, op, s, keys, args...)
	}
	start := time.Now()
	var eval, wait *goredis.Cmd
	var res any
	var err error
	for _, load := range []bool{false, true} {
		wait, err = r.pipelineWaited(ctx, key, func(p goredis.Pipeliner) {
			if load {
				eval = s.Eval(ctx, p, keys, args...)
			} else {
				eval = s.EvalSha(ctx, p, keys, args...)
			}
		})
		if err == nil {
			res, err = eval.Result()
		}
		if load || !goredis.HasErrorPrefix(err, "NOSCRIPT") {
			break
		}
	}
	out, err := r.scriptAnswer(op, start, res, err)
	if err != nil {
		return out, err
	}
	return out, r.checkWait(op, wait)
}

// redisFirstInt is out[0] of a script answer when it is an integer (a
// lease's token); ok is false for a refusal's holder or no answer.
func redisFirstInt(out []any) (int64, bool) {
	if len(out) == 0 {
		return 0, false
	}
	v, ok := out[0].(int64)
	return v, ok
}

// pipelineWaited sends queue's commands and then WAIT or WAITAOF in one
// pipeline to the master of key, and answers the wait's command. err is
// a failure to reach that master; the commands carry their own errors.
func (r *Store) pipelineWaited(ctx context.Context, key string, queue func(p goredis.Pipeliner)) (*goredis.Cmd, error) {
	c := r.client
	if cc, ok := r.client.(*goredis.ClusterClient); ok {
		m, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return nil, err
		}
		c = m
	}
	var wait *goredis.Cmd
	// Pipelined's error is its first command's: each command carries its
	// own (a network failure is every command's), and wait is checked.
	_, _ = c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		queue(p)
		ms := redisMillis(r.opt.WaitTimeout)
		if r.opt.WaitAOF {
			wait = p.Do(ctx, "WAITAOF", 1, r.opt.WaitReplicas, ms)
		} else {
			wait = p.Do(ctx, "WAIT", r.opt.WaitReplicas, ms)
		}
		return nil
	})
	return wait, nil
}

// checkWait turns a WAIT or WAITAOF answer short of the options into
// ErrUnavailable.
func (r *Store) checkWait(op string, wait *goredis.Cmd) error {
	if err := wait.Err(); err != nil {
		return fmt.Errorf("sessionstore: redis: %s: wait for copies: %w: %w", op, sessionstore.ErrUnavailable, err)
	}
	want := r.opt.WaitReplicas
	if !r.opt.WaitAOF {
		if n, err := wait.Int64(); err != nil || n < int64(want) {
			return fmt.Errorf("sessionstore: redis: %s: %w: %d of %d replicas acknowledged the write within %v",
				op, sessionstore.ErrUnavailable, n, want, r.opt.WaitTimeout)
		}
		return nil
	}
	// WAITAOF answers [local fsyncs, replicas that fsynced].
	if v, err := wait.Int64Slice(); err != nil || len(v) != 2 || v[0] < 1 || v[1] < int64(want) {
		return fmt.Errorf("sessionstore: redis: %s: %w: the write was not fsynced by the primary and %d replicas within %v (WAITAOF answered %v)",
			op, sessionstore.ErrUnavailable, want, r.opt.WaitTimeout, wait.Val())
	}
	return nil
}
