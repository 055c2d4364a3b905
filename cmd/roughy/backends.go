package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

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
	// Redis commits wait for copies (redis.Options).
	waitReplicas *int
	waitAOF      *bool
	waitTimeout  *time.Duration
}

func addStoreFlags(fs *flag.FlagSet) *storeFlags {
	return &storeFlags{
		dataDir:  fs.String("data-dir", "./data", "embedded store and local bytes"),
		sessions: choiceFlag(fs, "sessions", "local", "session store: embedded or Redis", "local", "redis"),
		redisURL: fs.String("redis-url", "redis://127.0.0.1:6379/0",
			"Redis: standalone URL, redis+sentinel://, or a comma list of cluster nodes"),
		waitReplicas: fs.Int("redis-wait-replicas", 0,
			"Redis: a commit (and a PATCH's lease) is answered only once this many replicas have it (WAIT); fewer within --redis-wait-timeout: 503"),
		waitAOF: fs.Bool("redis-wait-aof", false,
			"Redis: a commit also waits for the primary's (and --redis-wait-replicas replicas') append-only file fsync (WAITAOF, Redis 7.2+)"),
		waitTimeout: fs.Duration("redis-wait-timeout", time.Second,
			"Redis: longest wait of a commit for its copies (at most 2s)"),
	}
}

// embedded reports whether sessions live in the embedded store.
func (s *storeFlags) embedded() bool { return *s.sessions == "local" }

// open opens the selected store.
func (s *storeFlags) open(ctx context.Context) (sessionstore.Store, error) {
	if !s.embedded() {
		if *s.waitReplicas < 0 {
			return nil, fmt.Errorf("%w: --redis-wait-replicas must not be negative", errUsage)
		}
		if *s.waitTimeout <= 0 || *s.waitTimeout > redis.MaxWaitTimeout {
			return nil, fmt.Errorf("%w: --redis-wait-timeout must be above 0 and at most %v", errUsage, redis.MaxWaitTimeout)
		}
		st, err := redis.NewWith(ctx, *s.redisURL, redis.Options{
			WaitReplicas: *s.waitReplicas, WaitAOF: *s.waitAOF, WaitTimeout: *s.waitTimeout})
		if err != nil {
			if *s.waitAOF {
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
	bucket          *string
	endpoint        *string
	region          *string
	forcePathStyle  *bool
	layout          *string
	partConcurrency *int
	maxAttempts     *int
	stallTimeout    *time.Duration
	maxBufferMemory *int64
	presignTTL      *time.Duration
	// observer, when set before open, is told of every S3 request.
	observer pipeline.Observer
}

// addSinkFlags adds the storage flags; dataDir is shared with the store's.
func addSinkFlags(fs *flag.FlagSet, dataDir *string) *sinkFlags {
	return &sinkFlags{
		dataDir:  dataDir,
		storage:  choiceFlag(fs, "storage", "local", "where upload bytes go", "local", "s3"),
		bucket:   fs.String("s3-bucket", "", "S3 bucket (required with --storage s3)"),
		endpoint: fs.String("s3-endpoint", "", "S3 endpoint URL for S3-compatible stores (default: AWS)"),
		region:   fs.String("s3-region", "", "S3 region (default: from the AWS config chain)"),
		forcePathStyle: fs.Bool("s3-force-path-style", false,
			"path-style bucket addressing (most S3-compatible stores)"),
		layout: choiceFlag(fs, "s3-layout", "default",
			"part layout: default (no byte sent twice) or equal (equal part sizes, for Cloudflare R2)",
			"default", "equal"),
		partConcurrency: fs.Int("s3-part-concurrency", 4, "parts of one upload in flight at once"),
		maxAttempts:     fs.Int("s3-max-attempts", 5, "attempts per S3 call (5xx, throttling, timeouts are retried with backoff)"),
		stallTimeout: fs.Duration("s3-stall-timeout", 30*time.Second,
			"an S3 request attempt that moves no byte for this long fails (and is retried); a slow one that keeps moving is not cut"),
		maxBufferMemory: sizeFlag(fs, "max-buffer-memory", 1<<30, "global budget for part buffers (e.g. 1GiB, 512MiB)"),
		presignTTL:      fs.Duration("presign-ttl", time.Hour, "validity of presigned S3 URLs (downloads, ffprobe)"),
	}
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
	if *s.bucket == "" {
		return nil, nil, fmt.Errorf("%w: --storage s3 needs --s3-bucket (ROUGHY_S3_BUCKET)", errUsage)
	}
	setMemoryLimit(*s.maxBufferMemory)
	s3, err := pipeline.NewS3Sink(ctx, pipeline.S3Config{
		Bucket:          *s.bucket,
		Endpoint:        *s.endpoint,
		Region:          *s.region,
		ForcePathStyle:  *s.forcePathStyle,
		Layout:          *s.layout,
		PartConcurrency: *s.partConcurrency,
		PresignTTL:      *s.presignTTL,
		MaxAttempts:     *s.maxAttempts,
		StallTimeout:    *s.stallTimeout,
		Observer:        s.observer,
	}, pool)
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
