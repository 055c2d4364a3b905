// Package redis is the sessionstore.Store of a fleet: Redis (standalone,
// Sentinel or Cluster) with Lua scripts for every atomic step. The key
// layout and the scripts are the wire format shared by every node of a
// running fleet: a node of this version and one of the last must agree on
// them.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roughy/ingest/sessionstore"
)

// Store is the sessionstore.Store of a fleet: every node of a cluster of
// Roughy servers shares it. It runs on a standalone Redis, behind Sentinel, or on a Redis
// Cluster.
//
// Key layout. Every key of one upload carries the upload's id as hash tag,
// so that one Lua script can change all of them atomically on Cluster:
//
//	roughy:{<id>}:session   hash: the Session (fields in lua.go)
//	roughy:{<id>}:parts     list: committed parts, "number:size:offset:etag";
//	                        dropped by the completing commit
//	roughy:{<id>}:lease     string: fencing token of the live lease, PX ttl
//	roughy:{<id>}:asset     hash: the Asset of the session
//	roughy:{<aid>}:assetid  string: session id of asset <aid> (id index)
//
// Shared keys carry their own tags: roughy:{expiry}:sessions (ZSET of
// session ids scored by ExpiresAt in ms), roughy:{probe}:stream (probe jobs,
// consumer group "roughy-probe"), roughy:{probe}:delayed (ZSET of retries
// scored by due time), roughy:{probe}:dead (dead-letter stream), and
// roughy:{keys}:… for API keys, roughy:{meta}:epoch (the data-loss
// marker, epoch.go); revoked keys are announced on the channel
// roughy:keys:revoked (keys.go).
//
// On standalone and Sentinel, where no slot rule applies, the commit that
// completes an upload also adds its probe job and drops it from the expiry
// set in the same script, and a commit that slides the expiry moves the
// entry. On Cluster those keys live in other slots: the expiry set is
// cleaned and its scores are brought up to date lazily by Expired, and the
// probe job is added just before the commit script as a job to verify
// (see Commit and ClaimProbe).
//
// Memory: a completed upload keeps its session hash (HEAD answers its
// final offset) and asset; its parts list is deleted by the completing
// commit and its lease key expires by itself (PX). The hash state (about
// 100 bytes) stays in the session hash. DeleteUpload removes session,
// parts and lease and keeps the asset hash, marked deleted.
type Store struct {
	client  goredis.UniversalClient
	cluster bool
	// node is this store's node id; hbStop ends its liveness refreshes
	// (see node.go).
	node   string
	hbStop chan struct{}
	hbWG   sync.WaitGroup
	log    *slog.Logger
	// verifyCutoff is redisVerifyCutoff (tests shorten it).
	verifyCutoff time.Duration
	// epoch is the data-loss marker's value this store adopted (a string;
	// see redisEpochKey).
	epoch atomic.Value
	// obs, when set, is told of every script run (observe.go).
	obs sessionstore.Observer
	// opt are the options the store was opened with (wait.go).
	opt Options
	// silent are the runs of unanswered release requests, by holder node
	// (release.go).
	silentMu sync.Mutex
	silent   map[string]silence
}

// Key names; see Store.
const (
	redisExpiryKey    = "roughy:{expiry}:sessions"
	redisProbeStream  = "roughy:{probe}:stream"
	redisProbeDelayed = "roughy:{probe}:delayed"
	redisProbeDead    = "roughy:{probe}:dead"
	redisProbeGroup   = "roughy-probe"
	redisKeysAll      = "roughy:{keys}:ids"
	redisKeyByID      = "roughy:{keys}:id:"
	redisKeyByHash    = "roughy:{keys}:hash:"
)

// redisDeadMaxLen is the length the dead-letter stream is trimmed to
// (XADD MAXLEN ~): it keeps the most recent failures. The job streams
// (probe, webhook) have no cap: trimming would drop the oldest jobs no
// consumer has settled yet, whatever their state. A job leaves its stream
// when it is settled (XACK and XDEL in one script), so a stream holds the
// backlog only; its length is on /metrics (QueueLengths) for alerting.
const redisDeadMaxLen = 10_000

func redisSessionKey(id string) string  { return "roughy:{" + id + "}:session" }
func redisPartsKey(id string) string    { return "roughy:{" + id + "}:parts" }
func redisLeaseKey(id string) string    { return "roughy:{" + id + "}:lease" }
func redisAssetKey(sid string) string   { return "roughy:{" + sid + "}:asset" }
func redisAssetRefKey(id string) string { return "roughy:{" + id + "}:assetid" }

// New connects to the Redis that url names:
//
//	redis://[user:pass@]host:port[/db]            standalone (rediss:// for TLS)
//	redis+sentinel://[user:pass@]host:port[,host:port]/master[/db]
//	host:port,host:port[,…]                       Cluster (items may be redis:// URLs)
//
// A standalone URL that points at a node with cluster mode on is used as a
// Cluster seed. New fails when Redis does not answer.
func New(ctx context.Context, url string) (*Store, error) {
	return NewWith(ctx, url, Options{})
}

// NewWith is New with options; it fails when the server cannot
// honour them (see Options).
func NewWith(ctx context.Context, url string, o Options) (*Store, error) {
	redisLogOnce.Do(func() { goredis.SetLogger(redisSlog{}) })
	url = strings.TrimSpace(url)
	r := &Store{log: slog.Default(), verifyCutoff: redisVerifyCutoff}
	var err error
	switch {
	case strings.HasPrefix(url, "redis+sentinel://"), strings.HasPrefix(url, "rediss+sentinel://"):
		r.client, err = redisSentinelClient(url)
	case strings.Contains(url, ","):
		r.client, err = redisClusterClient(strings.Split(url, ","))
		r.cluster = true
	default:
		if !strings.Contains(url, "://") {
			url = "redis://" + url
		}
		var opt *goredis.Options
		opt, err = goredis.ParseURL(url)
		if err == nil {
			redisFailFast(&opt.MaxRetries, &opt.DialerRetries, &opt.DialerRetryTimeout)
			opt.ContextTimeoutEnabled = true
			r.client = goredis.NewClient(opt)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("sessionstore: redis url: %w", redisURLErr(err))
	}
	if c, ok := r.client.(*goredis.Client); ok {
		info, err := c.Info(ctx, "cluster").Result()
		if err != nil {
			c.Close()
			return nil, redisErr("connect", err)
		}
		if strings.Contains(info, "cluster_enabled:1") {
			opt := c.Options()
			c.Close()
			r.client = goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: []string{opt.Addr},
				Username: opt.Username, Password: opt.Password, TLSConfig: opt.TLSConfig,
				DialerRetries: opt.DialerRetries, DialerRetryTimeout: opt.DialerRetryTimeout,
				ContextTimeoutEnabled: true})
			r.cluster = true
		}
	}
	if err := r.client.Ping(ctx).Err(); err != nil {
		r.client.Close()
		return nil, redisErr("connect", err)
	}
	if err := r.checkOptions(ctx, o); err != nil {
		r.client.Close()
		return nil, err
	}
	if err := r.adoptEpoch(ctx); err != nil {
		r.client.Close()
		return nil, err
	}
	r.node = sessionstore.NewNodeID()
	if err := r.startHeartbeat(ctx); err != nil {
		r.client.Close()
		return nil, err
	}
	return r, nil
}

// redisURLErr drops the URL from a parse error: it may hold a password.
func redisURLErr(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

func redisSentinelClient(raw string) (goredis.UniversalClient, error) {
	scheme, rest, _ := strings.Cut(raw, "://")
	hosts, path, _ := strings.Cut(rest, "/")
	opt := &goredis.FailoverOptions{}
	if userinfo, h, ok := strings.Cut(hosts, "@"); ok {
		hosts = h
		u, err := url.Parse("redis://" + userinfo + "@x")
		if err != nil {
			return nil, err
		}
		opt.Username = u.User.Username()
		opt.Password, _ = u.User.Password()
		opt.SentinelPassword = opt.Password
	}
	for h := range strings.SplitSeq(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			opt.SentinelAddrs = append(opt.SentinelAddrs, h)
		}
	}
	path, query, _ := strings.Cut(path, "?")
	if query != "" {
		return nil, errors.New("query parameters are not supported")
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	if len(opt.SentinelAddrs) == 0 || segs[0] == "" || len(segs) > 2 {
		return nil, errors.New("want redis+sentinel://host:port[,host:port]/master[/db]")
	}
	opt.MasterName = segs[0]
	if len(segs) == 2 {
		db, err := strconv.Atoi(segs[1])
		if err != nil {
			return nil, fmt.Errorf("bad database %q", segs[1])
		}
		opt.DB = db
	}
	if scheme == "rediss+sentinel" {
		o, err := goredis.ParseURL("rediss://" + opt.SentinelAddrs[0])
		if err != nil {
			return nil, err
		}
		opt.TLSConfig = o.TLSConfig
	}
	redisFailFast(&opt.MaxRetries, &opt.DialerRetries, &opt.DialerRetryTimeout)
	opt.ContextTimeoutEnabled = true
	return goredis.NewFailoverClient(opt), nil
}

func redisClusterClient(items []string) (goredis.UniversalClient, error) {
	opt := &goredis.ClusterOptions{}
	for _, it := range items {
		it = strings.TrimSpace(it)
		if it == "" {
			continue
		}
		if !strings.Contains(it, "://") {
			opt.Addrs = append(opt.Addrs, it)
			continue
		}
		o, err := goredis.ParseURL(it)
		if err != nil {
			return nil, err
		}
		opt.Addrs = append(opt.Addrs, o.Addr)
		opt.Username, opt.Password, opt.TLSConfig = o.Username, o.Password, o.TLSConfig
	}
	if len(opt.Addrs) == 0 {
		return nil, errors.New("no cluster node")
	}
	// Retries stay go-redis's (the cluster client follows MOVED/ASK itself).
	var retries int
	redisFailFast(&retries, &opt.DialerRetries, &opt.DialerRetryTimeout)
	opt.ContextTimeoutEnabled = true
	return goredis.NewClusterClient(opt), nil
}

// redisLogOnce routes go-redis's own log lines (one per failed dial during
// an outage) to slog at debug level, once per process: callers get the
// failure as ErrUnavailable and log it where they handle it.
var redisLogOnce sync.Once

type redisSlog struct{}

func (redisSlog) Printf(ctx context.Context, format string, v ...any) {
	slog.DebugContext(ctx, "sessionstore: go-redis: "+fmt.Sprintf(format, v...))
}

// redisFailFast lowers go-redis's retry defaults (3 retries of 5 dials
// 100 ms apart: about 1.5 s per call while Redis is down) to 1 retry of 2
// dials 50 ms apart, so that a request during an outage gets its 503 within
// a fraction of a second. Values set in the URL are kept.
func redisFailFast(retries, dials *int, dialWait *time.Duration) {
	if *retries == 0 {
		*retries = 1
	}
	if *dials == 0 {
		*dials = 2
	}
	if *dialWait == 0 {
		*dialWait = 50 * time.Millisecond
	}
}

// Close ends the node (its liveness record is deleted: leases it still
// holds are free at once) and closes the connections.
func (r *Store) Close() error {
	r.stopHeartbeat()
	return r.client.Close()
}

// redisErr maps a go-redis error: goredis.Nil is ErrNotFound, a cancelled
// context stays itself, Redis replies that mean "not now" (LOADING,
// CLUSTERDOWN, …) and every network error or timeout wrap ErrUnavailable.
// Other Redis error replies (a script bug) are plain errors.
func redisErr(op string, err error) error {
	switch {
	case errors.Is(err, goredis.Nil):
		return fmt.Errorf("sessionstore: redis: %s: %w", op, sessionstore.ErrNotFound)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("sessionstore: redis: %s: %w", op, err)
	}
	if rerr, ok := errors.AsType[goredis.Error](err); ok && !redisTransient(rerr) {
		return fmt.Errorf("sessionstore: redis: %s: %w", op, err)
	}
	return fmt.Errorf("sessionstore: redis: %s: %w: %w", op, sessionstore.ErrUnavailable, err)
}

// redisTransient reports the Redis error replies that mean the server
// cannot serve right now.
func redisTransient(err goredis.Error) bool {
	for _, p := range []string{"LOADING", "BUSY", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN",
		"READONLY", "NOREPLICAS", "OOM", "MOVED", "ASK"} {
		if goredis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// runScript runs s by EVALSHA (EVAL once after NOSCRIPT) and splits its
// answer into the status code and the rest. Codes other than luaOK become
// their sentinel errors.
func (r *Store) runScript(ctx context.Context, op string, s *goredis.Script, keys []string, args ...any) ([]any, error) {
	start := time.Now()
	res, err := s.Run(ctx, r.client, keys, args...).Result()
	return r.scriptAnswer(op, start, res, err)
}

// scriptAnswer reports a script run that started at start to the
// observer and splits its answer res (or err) as runScript does.
func (r *Store) scriptAnswer(op string, start time.Time, res any, err error) ([]any, error) {
	if r.obs != nil {
		rerr := err
		if errors.Is(err, goredis.Nil) {
			rerr = nil // an answer: "nothing there"
		}
		r.obs.RedisScript(op, time.Since(start), rerr)
	}
	if err != nil {
		return nil, redisErr(op, err)
	}
	out, ok := res.([]any)
	if !ok || len(out) == 0 {
		return nil, fmt.Errorf("sessionstore: redis: %s: unexpected script answer %T", op, res)
	}
	code, _ := out[0].(int64)
	var sentinel error
	switch code {
	case luaOK:
		return out[1:], nil
	case luaNotFound:
		sentinel = sessionstore.ErrNotFound
	case luaConflict:
		sentinel = sessionstore.ErrOffsetConflict
	case luaLeaseLost:
		sentinel = sessionstore.ErrLeaseLost
	case luaLocked:
		sentinel = sessionstore.ErrLocked
	case luaExhausted:
		sentinel = sessionstore.ErrPartsExhausted
	case luaExists:
		sentinel = sessionstore.ErrExists
	case luaFenced:
		sentinel = sessionstore.ErrFenced
	default:
		return nil, fmt.Errorf("sessionstore: redis: %s: unexpected script status %v", op, out[0])
	}
	// A refusal may carry details (luaLocked: the holder and its token).
	return out[1:], fmt.Errorf("sessionstore: redis: %s: %w", op, sentinel)
}
