// Package proxy is Roughy's HTTP front end on fasthttp: the TUS 1.0.0
// endpoint, API-key auth, the assets API, signed downloads, CORS, health
// and metrics. fasthttp appears only in this package.
package proxy

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// Config is the proxy's part of `roughy serve`'s flags.
type Config struct {
	// PublicURL is the base URL for Location and download_url ("" = from
	// the request: X-Forwarded-Proto/Host, else Host).
	PublicURL string
	// UploadExpiry is how long an upload may sit idle before it expires.
	UploadExpiry time.Duration
	// CORSOrigins are the allowed browser origins ("*" = any).
	CORSOrigins []string
	// SigningKey signs local download URLs (HMAC-SHA256).
	SigningKey []byte
	// DownloadTTL is how long a download_url stays valid.
	DownloadTTL time.Duration
	// LeaseTTL is how long a PATCH's lease lives without renewal.
	LeaseTTL time.Duration
	// Logger receives the proxy's logs (default slog.Default()). API keys
	// are never logged.
	Logger *slog.Logger

	// BodyIdleTimeout is how long a body read may wait for the next byte
	// (default 60s). There is no limit on a whole body: a slow but steady
	// 64 MiB PATCH must not be cut off.
	BodyIdleTimeout time.Duration
	// MinBodyRate is the least throughput, in bytes per second of waiting
	// for the client, an upload body must keep over each MinBodyRateWindow
	// (default 1 KiB/s over 30 s); a slower body is cut off with 408 and
	// what was durable stays committed. Negative disables it.
	MinBodyRate int64
	// MinBodyRateWindow is the window MinBodyRate is averaged over.
	MinBodyRateWindow time.Duration
	// MaxAccountBodies caps the upload bodies (PATCH, POST with data) one
	// account streams to this node at once (default 64); past it, 429 with
	// Retry-After. Negative disables it.
	MaxAccountBodies int
	// MinFreeSpace makes /readyz fail while the storage has less free
	// space (local storage only; 0: no floor).
	MinFreeSpace int64
	// Buffers, when set, reports the pipeline's part buffer memory
	// (a *pipeline.Pool) on /metrics.
	Buffers BufferStats
	// KeyCacheTTL is how long a successful key lookup is reused without
	// asking the store (default 10s; a revoked key works that much longer).
	// Negative disables the cache.
	KeyCacheTTL time.Duration
}

// BufferStats is what /metrics shows of a buffer pool; *pipeline.Pool
// implements it.
type BufferStats interface {
	InUse() int64
	Budget() int64
}

// Server serves the HTTP API.
type Server struct {
	cfg   Config
	store sessionstore.Store
	pipe  *pipeline.Pipeline

	log     *slog.Logger
	srv     *fasthttp.Server
	sign    []byte
	origins map[string]bool // nil: any origin
	keys    keyCache
	metrics *metrics

	// base is the parent of every request context. It is canceled only
	// when Shutdown gives up waiting, so in-flight PATCHes can finish.
	base       context.Context
	cancelBase context.CancelFunc
	inflight   atomic.Int64

	bodiesMu sync.Mutex
	bodies   map[*bodyReader]struct{} // upload bodies being read

	streams accountStreams
}

// New returns a server over store and pipe.
func New(cfg Config, store sessionstore.Store, pipe *pipeline.Pipeline) *Server {
	if cfg.UploadExpiry <= 0 {
		cfg.UploadExpiry = 24 * time.Hour
	}
	if cfg.DownloadTTL <= 0 {
		cfg.DownloadTTL = time.Hour
	}
	if cfg.LeaseTTL <= 0 {
		// Short enough that a request after a node died gets the upload
		// within tus-js-client's retry schedule (0, 3, 5, 10, 20 s);
		// renewed every third of it while a PATCH streams.
		cfg.LeaseTTL = 10 * time.Second
	}
	if cfg.BodyIdleTimeout <= 0 {
		cfg.BodyIdleTimeout = 60 * time.Second
	}
	if cfg.MinBodyRate == 0 {
		cfg.MinBodyRate = 1 << 10
	}
	if cfg.MinBodyRateWindow <= 0 {
		cfg.MinBodyRateWindow = 30 * time.Second
	}
	if cfg.MaxAccountBodies == 0 {
		cfg.MaxAccountBodies = 64
	}
	if cfg.KeyCacheTTL == 0 {
		cfg.KeyCacheTTL = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	s := &Server{cfg: cfg, store: store, pipe: pipe, log: cfg.Logger, metrics: newMetrics(), bodies: map[*bodyReader]struct{}{}}
	s.streams = accountStreams{max: cfg.MaxAccountBodies, n: map[string]int{}}
	s.sign = cfg.SigningKey
	if len(s.sign) == 0 {
		// Without a configured key, download URLs die with the process.
		s.sign = make([]byte, 32)
		rand.Read(s.sign)
	}
	s.origins = map[string]bool{}
	for _, o := range cfg.CORSOrigins {
		if o = strings.TrimSpace(o); o == "*" {
			s.origins = nil
			break
		} else if o != "" {
			s.origins[strings.TrimRight(o, "/")] = true
		}
	}
	if len(s.origins) == 0 {
		s.origins = nil
	}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	s.srv = &fasthttp.Server{
		Handler: s.handle,
		Name:    "roughy",
		// Stream bodies: a PATCH goes from the socket through the
		// pipeline's buffers, never whole into memory.
		StreamRequestBody: true,
		// Pre-reads at most this much of any body before the handler runs;
		// with streaming it is not a cap (fasthttp PR #911), chunk limits
		// are enforced by the handlers.
		MaxRequestBodySize: 64 << 10,
		// The read buffer also caps the header size: long Upload-Metadata
		// (file names, Uppy's extra keys) must fit.
		ReadBufferSize:  64 << 10,
		WriteBufferSize: 16 << 10,
		// ReadTimeout covers the request line and headers only: upload
		// handlers replace it with a per-read idle deadline before reading
		// the body (FIELD-NOTES: an absolute deadline kills slow uploads).
		ReadTimeout:                  cfg.BodyIdleTimeout,
		IdleTimeout:                  2 * time.Minute,
		WriteTimeout:                 0,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		CloseOnShutdown:              true,
		// Detects peers that vanished without a FIN (a stalled download
		// has no write deadline: a large one may take long).
		TCPKeepalive:       true,
		TCPKeepalivePeriod: time.Minute,
		ExpectHandler:      s.expect,
		Logger:             fasthttpLogger{s.log},
	}
	return s
}

// Serve serves HTTP on ln until Shutdown. It returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.srv.Serve(ln); err != nil {
		return fmt.Errorf("proxy: serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting connections and waits for in-flight requests:
// PATCHes finish, committing what is durable. When ctx ends first, the
// remaining requests are canceled (they still commit what is durable) and
// ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.ShutdownWithContext(ctx)
	if err == nil {
		s.cancelBase()
		return nil
	}
	s.cancelBase()
	s.cutBodies()
	// Give canceled handlers a moment to commit and release their leases.
	for deadline := time.Now().Add(5 * time.Second); s.inflight.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("proxy: shutdown: %w", err)
}

// fasthttpLogger sends fasthttp's own messages to slog.
type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug("fasthttp", "msg", strings.TrimSpace(fmt.Sprintf(format, args...)))
}
