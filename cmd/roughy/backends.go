package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"

	"github.com/roughy/ingest/sessionstore/bolt"

	"github.com/roughy/ingest/sessionstore/redis"
)

// storeFlags select the session store: the embedded one in --data-dir, or
// Redis.
type storeFlags struct {
	dataDir  *string
	sessions *string
	redisURL *string
	// redis is bound to the --redis-wait-* flags: Redis commits wait for
	// copies.
	redis redis.Options
}

func addStoreFlags(fs *flag.FlagSet) *storeFlags {
	s := &storeFlags{
		dataDir:  fs.String("data-dir", "./data", "embedded store and local bytes"),
		sessions: choiceFlag(fs, "sessions", "local", "session store: embedded or Redis", "local", "redis"),
		redisURL: fs.String("redis-url", "redis://127.0.0.1:6379/0",
			"Redis: standalone URL, redis+sentinel://, or a comma list of cluster nodes"),
		redis: redis.DefaultOptions(),
	}
	fs.IntVar(&s.redis.WaitReplicas, "redis-wait-replicas", s.redis.WaitReplicas,
		"Redis: a commit (and a PATCH's lease) is answered only once this many replicas have it (WAIT); fewer within --redis-wait-timeout: 503 (0: no wait)")
	fs.BoolVar(&s.redis.WaitAOF, "redis-wait-aof", s.redis.WaitAOF,
		"Redis: a commit also waits for the primary's (and --redis-wait-replicas replicas') append-only file fsync (WAITAOF, Redis 7.2+)")
	fs.DurationVar(&s.redis.WaitTimeout, "redis-wait-timeout", s.redis.WaitTimeout,
		"Redis: longest wait of a commit for its copies (at most 2s)")
	return s
}

// embedded reports whether sessions live in the embedded store.
func (s *storeFlags) embedded() bool { return *s.sessions == "local" }

// open opens the selected store.
func (s *storeFlags) open(ctx context.Context) (sessionstore.Store, error) {
	if !s.embedded() {
		if s.redis.WaitReplicas < 0 {
			return nil, fmt.Errorf("%w: --redis-wait-replicas must not be negative", errUsage)
		}
		if s.redis.WaitTimeout <= 0 || s.redis.WaitTimeout > redis.MaxWaitTimeout {
			return nil, fmt.Errorf("%w: --redis-wait-timeout must be above 0 and at most %v", errUsage, redis.MaxWaitTimeout)
		}
		st, err := redis.NewWith(ctx, *s.redisURL, s.redis)
		if err != nil {
			if s.redis.WaitAOF {
				return nil, fmt.Errorf("roughy: open redis store with --redis-wait-aof: %w", err)
			}
			return nil, fmt.Errorf("roughy: open redis store: %w", err)
		}
		return st, nil
	}
	if err := os.MkdirAll(*s.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("roughy: data dir: %w", err)
	}
	path := filepath.Join(*s.dataDir, "roughy.db")
	// bbolt locks the file: a second process on the same data dir (e.g.
	// "roughy keys list" while serve runs) fails after the store's open
	// timeout instead of waiting forever.
	st, err := bolt.New(path)
	if err != nil {
		return nil, fmt.Errorf("roughy: open embedded store (one process per data dir): %w", err)
	}
	return st, nil
}

// sinkFlags select where upload bytes go: local disk or S3.
type sinkFlags struct {
	dataDir         *string
	storage         *string
	maxBufferMemory *int64
	// s3 is bound to the --s3-* flags and --presign-ttl.
	s3 pipeline.S3Config
}

// addSinkFlags adds the storage flags; dataDir is shared with the store's.
func addSinkFlags(fs *flag.FlagSet, dataDir *string) *sinkFlags {
	s := &sinkFlags{
		dataDir:         dataDir,
		storage:         choiceFlag(fs, "storage", "local", "where upload bytes go", "local", "s3"),
		maxBufferMemory: sizeFlag(fs, "max-buffer-memory", 1<<30, "global budget for body buffers: S3 parts, and the 1 MiB buffers of local writes (up to six for one upload alone, one each once more uploads stream than there are cores) (e.g. 1GiB, 512MiB)"),
		s3:              pipeline.DefaultS3Config(),
	}
	c := &s.s3
	fs.StringVar(&c.Bucket, "s3-bucket", c.Bucket, "S3 bucket (required with --storage s3)")
	fs.StringVar(&c.Endpoint, "s3-endpoint", c.Endpoint, "S3 endpoint URL for S3-compatible stores (default: AWS)")
	fs.StringVar(&c.Region, "s3-region", c.Region, "S3 region (default: from the AWS config chain)")
	fs.BoolVar(&c.ForcePathStyle, "s3-force-path-style", c.ForcePathStyle, "path-style bucket addressing (most S3-compatible stores)")
	choiceVar(fs, &c.Layout, "s3-layout",
		"part layout: default (no byte sent twice) or equal (equal part sizes, for Cloudflare R2)",
		pipeline.S3LayoutDefault, pipeline.S3LayoutEqual)
	fs.IntVar(&c.PartConcurrency, "s3-part-concurrency", c.PartConcurrency, "parts of one upload in flight at once")
	fs.IntVar(&c.MaxAttempts, "s3-max-attempts", c.MaxAttempts, "attempts per S3 call (5xx, throttling, timeouts are retried with backoff)")
	fs.DurationVar(&c.StallTimeout, "s3-stall-timeout", c.StallTimeout,
		"an S3 request attempt that moves no byte for this long fails (and is retried); a slow one that keeps moving is not cut (negative: never)")
	fs.DurationVar(&c.PresignTTL, "presign-ttl", c.PresignTTL, "validity of presigned S3 URLs (downloads, ffprobe)")
	return s
}

// open opens the selected sink; pool is the --max-buffer-memory budget its
// buffers come from (S3 parts, the local sink's pipe buffers).
func (s *sinkFlags) open(ctx context.Context) (sink pipeline.Sink, pool *pipeline.Pool, err error) {
	if *s.maxBufferMemory <= 0 {
		return nil, nil, errors.Join(errUsage, errors.New("roughy: --max-buffer-memory must be positive"))
	}
	pool = pipeline.NewPool(*s.maxBufferMemory)
	if *s.storage == "local" {
		if err := os.MkdirAll(*s.dataDir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("roughy: data dir: %w", err)
		}
		sink, err := pipeline.NewLocalSink(*s.dataDir, pipeline.LocalBuffers(pool))
		if errors.Is(err, pipeline.ErrOverBudget) {
			return nil, nil, errors.Join(errUsage, fmt.Errorf("roughy: --max-buffer-memory: %w", err))
		}
		if err != nil {
			return nil, nil, fmt.Errorf("roughy: local storage: %w", err)
		}
		setMemoryLimit(*s.maxBufferMemory)
		return sink, pool, nil
	}
	if s.s3.Bucket == "" {
		return nil, nil, fmt.Errorf("%w: --storage s3 needs --s3-bucket (ROUGHY_S3_BUCKET)", errUsage)
	}
	setMemoryLimit(*s.maxBufferMemory)
	s3, err := pipeline.NewS3Sink(ctx, s.s3, pool)
	if err != nil {
		return nil, nil, fmt.Errorf("roughy: s3 storage: %w", err)
	}
	return s3, pool, nil
}

// memoryHeadroom is what the process may use beyond the part buffers
// (fasthttp connection buffers, the SDK, the runtime): the target is
// peak RSS within --max-buffer-memory + 64 MiB.
const memoryHeadroom = 48 << 20

// setMemoryLimit makes the Go GC hold the heap near the buffer budget plus
// headroom, unless the operator set GOMEMLIMIT. Without it, garbage from
// dropped buffers could double the heap before the next GC (GOGC=100).
func setMemoryLimit(budget int64) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(budget + memoryHeadroom)
}
