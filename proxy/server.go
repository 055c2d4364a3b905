// Package proxy is Roughy's HTTP front end on fasthttp: the TUS 1.0.0
// endpoint, API-key auth, the assets API, signed downloads, CORS, health
// and metrics. fasthttp appears only in this package.
package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/upload"
	"github.com/roughy/ingest/webhook"
	"github.com/valyala/fasthttp"
)

// Config is the proxy's part of `roughy serve`'s flags. Start from
// DefaultConfig: a field that can be off is off at 0 (config.go).
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
	// TakeoverWait is how long a PATCH or DELETE waits for the request
	// holding its upload to let go before answering 423.
	TakeoverWait time.Duration
	// Logger receives the proxy's logs (nil: slog.Default()). API keys
	// are never logged.
	Logger *slog.Logger

	// BodyIdleTimeout is how long a body read may wait for the next byte.
	// There is no limit on a whole body: a slow but steady
	// 64 MiB PATCH must not be cut off.
	BodyIdleTimeout time.Duration
	// MinBodyRate is the least throughput, in bytes per second of waiting
	// for the client, an upload body must keep over each MinBodyRateWindow;
	// a slower body is cut off with 408 and what was durable stays
	// committed. 0: no minimum.
	MinBodyRate int64
	// MinBodyRateWindow is the window MinBodyRate is averaged over.
	MinBodyRateWindow time.Duration
	// MaxAccountBodies caps the upload bodies (PATCH, POST with data) one
	// account streams to this node at once; past it, 503 with
	// Retry-After. 0: no cap.
	MaxAccountBodies int
	// MetricsElsewhere says /metrics is served on a listener of its own
	// (ServeMetrics): the public listener then answers it 404, so the
	// balancer's path rules are not what keeps it private.
	MetricsElsewhere bool
	// Profiling serves Go's runtime profiles (/debug/pprof/) on the
	// metrics listener, never on the public one, and samples blocking
	// and lock contention for them.
	Profiling bool
	// MinFreeSpace makes /readyz fail while the storage has less free
	// space (local storage only; 0: no floor).
	MinFreeSpace int64
	// Buffers, when set, reports the pipeline's part buffer memory
	// (a *pipeline.Pool) on /metrics.
	Buffers BufferStats
	// KeyCacheTTL is how long a successful key lookup is reused without
	// asking the store (a revoked key works that much longer). 0: no
	// cache. RunKeyRevocations evicts revoked keys
	// at once.
	KeyCacheTTL time.Duration
	// StaticKeys are the keys of --api-keys (records without secrets).
	// They authenticate from memory, before the cache and the store, so
	// they keep working whatever the store holds; SeedStaticKeys writes
	// them to the store.
	StaticKeys []sessionstore.Key

	// DownloadStallTimeout closes a connection whose response write makes
	// no progress for this long: a client that stopped reading (0:
	// never). A slow reader that keeps taking bytes is never
	// cut, however long the body.
	DownloadStallTimeout time.Duration
	// TLS, when set, serves HTTPS with its current certificate (tls.go);
	// nil serves plain HTTP.
	TLS *Certificates

	// MaxConns caps the open client connections (0: no cap but
	// fasthttp's default Concurrency); one more is answered 503.
	MaxConns int
	// MaxConnsPerIP caps the open connections of one client IP, and the
	// in-flight requests of one client behind a trusted proxy (0: no cap);
	// one more is answered 503.
	MaxConnsPerIP int
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// for MaxConnsPerIP; their own connections are not capped per IP.
	TrustedProxies []netip.Prefix
	// WebhookTargets are the receivers a webhook may be registered for:
	// public addresses, and the networks it allows.
	WebhookTargets webhook.Targets

	// QuotaDefaults are the per-account quotas of accounts without limits
	// of their own (quota.go; 0: unlimited).
	QuotaDefaults sessionstore.QuotaLimits
	// Telemetry is the node's metrics and traces (default: metrics only,
	// in a registry of the server's own). The backends report to it too.
	Telemetry *Telemetry
}

// BufferStats is what /metrics shows of a buffer pool; *pipeline.Pool
// implements it.
type BufferStats interface {
	InUse() int64
	Budget() int64
	// Waits are the buffer requests that waited for room, and how long.
	Waits() (n int64, total time.Duration)
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
	metrics *metrics
	tel     *Telemetry
	// metricsSrv is the listener of /metrics alone, when it has one.
	metricsSrv metricsServer

	// base is the parent of every request context. It is canceled only
	// when Shutdown gives up waiting, so in-flight PATCHes can finish.
	base       context.Context
	cancelBase context.CancelFunc
	inflight   atomic.Int64

	bodiesMu sync.Mutex
	bodies   map[*bodyReader]struct{} // upload bodies being read

	// svc is the upload service (service.go); leases are its leases and
	// takeovers.
	svc     *upload.Service
	leases  *upload.Leases
	clients clientLimiter // requests per client behind a trusted proxy
	streams accountStreams

	// The resources of the route table, each with what it needs
	// (resources.go).
	authn    authenticators
	assets   *assetsAPI
	direct   *directAPI
	webhooks *webhooksAPI
	quota    *quotaAPI
	ready    *readiness
}

// New returns a server over store and pipe.
func New(cfg Config, store sessionstore.Store, pipe *pipeline.Pipeline) *Server {
	cfg = cfg.settled()
	s := &Server{cfg: cfg, store: store, pipe: pipe, log: cfg.Logger, metrics: cfg.Telemetry.m, tel: cfg.Telemetry,
		bodies: map[*bodyReader]struct{}{}}
	s.svc = s.newService()
	s.leases = s.svc.Leases()
	s.tel.attach(s)
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
	s.clients = clientLimiter{max: cfg.MaxConnsPerIP, trusted: cfg.TrustedProxies, n: map[netip.Addr]int{}}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	attachResources(s)
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
		ReadBufferSize:  maxHeaderBytes,
		WriteBufferSize: 16 << 10,
		// ReadTimeout covers the request line and headers only: upload
		// handlers replace it with a per-read idle deadline before reading
		// the body (an absolute deadline kills slow uploads).
		ReadTimeout:                  cfg.BodyIdleTimeout,
		IdleTimeout:                  2 * time.Minute,
		WriteTimeout:                 0,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		CloseOnShutdown:              true,
		// TCP keep-alive is set by limitListener (see Serve).
		ExpectHandler: s.expect,
		ErrorHandler:  s.parseError,
		Logger:        fasthttpLogger{s.log},
	}
	if cfg.MaxConns > 0 {
		// A backstop: limitListener refuses connections over MaxConns
		// with a JSON 503 first. The margin covers a worker that is
		// between closing its connection and becoming free again.
		s.srv.Concurrency = cfg.MaxConns + cfg.MaxConns/16 + 16
	}
	return s
}

// tcpKeepAlivePeriod detects peers that vanished without a FIN (an idle
// connection has no deadline while a handler waits on it).
const tcpKeepAlivePeriod = time.Minute

// Serve serves HTTP on ln until Shutdown. It returns nil after Shutdown.
// While it serves, release requests addressed to this node (upload.Leases)
// cut off the writes they name.
func (s *Server) Serve(ln net.Listener) error {
	stop, err := s.leases.Watch(s.base)
	if err != nil {
		return fmt.Errorf("proxy: watch release requests: %w", err)
	}
	defer stop()
	ll := newLimitListener(ln, s.log, s.cfg.MaxConns, s.cfg.MaxConnsPerIP, s.cfg.TrustedProxies, tcpKeepAlivePeriod)
	ll.refused = s.metrics.refusedConns
	ln = ll
	if s.cfg.DownloadStallTimeout > 0 {
		ln = stallListener{Listener: ln, stall: s.cfg.DownloadStallTimeout, stalled: s.metrics.stalledConns}
	}
	if s.cfg.TLS != nil {
		// TLS over the limited listener: the caps count TCP connections
		// before any handshake work, and the handshake runs in the
		// connection's own goroutine (first read), under ReadTimeout.
		ll.tls = s.cfg.TLS.serverConfig()
		ln = tls.NewListener(ln, ll.tls)
	}
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
		s.metricsSrv.shutdown()
		return nil
	}
	s.cancelBase()
	s.metricsSrv.shutdown()
	s.cutBodies()
	// Give canceled handlers a moment to commit and release their leases.
	for deadline := time.Now().Add(5 * time.Second); s.inflight.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("proxy: shutdown: %w", err)
}
