package proxy

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/pprofhandler"
)

// metricsServer is the listener of its own that /metrics may be served
// on (--metrics-listen): a pod-internal or loopback port that operators
// scrape without going through the balancer.
type metricsServer struct {
	mu  sync.Mutex
	srv *fasthttp.Server
	// write writes /metrics, refuse an error answer; base is the
	// requests' context.
	write  func(*fasthttp.RequestCtx, *request)
	refuse func(*fasthttp.RequestCtx, *request, error)
	base   context.Context
	// profiling serves /debug/pprof/ (Config.Profiling).
	profiling bool
}

// Sampling of the block and mutex profiles while profiling is on: a
// blocking event of at least 10 µs, one lock contention event in 100.
const (
	blockProfileNanos   = 10_000
	mutexProfileOneIn   = 100
	profileWriteTimeout = 2 * time.Minute
)

// ServeMetrics serves GET /metrics (and /healthz, for the scraper's own
// checks) on ln until Shutdown. Set Config.MetricsElsewhere so that the
// public listener stops answering /metrics.
func (s *Server) ServeMetrics(ln net.Listener) error { return s.metricsSrv.serve(ln) }

func (m *metricsServer) serve(ln net.Listener) error {
	srv := &fasthttp.Server{
		Handler:               m.handle,
		Name:                  "roughy-metrics",
		NoDefaultServerHeader: true,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		MaxRequestBodySize:    4 << 10,
	}
	if m.profiling {
		// A CPU profile or trace answers after its ?seconds=.
		srv.WriteTimeout = profileWriteTimeout
		runtime.SetBlockProfileRate(blockProfileNanos)
		runtime.SetMutexProfileFraction(mutexProfileOneIn)
	}
	m.mu.Lock()
	m.srv = srv
	m.mu.Unlock()
	if err := srv.Serve(ln); err != nil {
		return fmt.Errorf("proxy: serve metrics: %w", err)
	}
	return nil
}

// route serves /metrics on the API listener.
func (m *metricsServer) route(_ context.Context, rc *fasthttp.RequestCtx, rq *request, _ *params) error {
	m.write(rc, rq)
	return nil
}

// handle is the metrics listener's handler.
func (m *metricsServer) handle(ctx *fasthttp.RequestCtx) {
	rq := &request{id: newRequestID(ctx), method: methodOf(ctx), route: "metrics", ctx: m.base}
	switch path := string(ctx.Path()); {
	case m.profiling && strings.HasPrefix(path, "/debug/pprof/"):
		pprofhandler.PprofHandler(ctx)
	case path == "/metrics":
		m.write(ctx, rq)
	case path == "/healthz":
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("ok\n")
	default:
		m.refuse(ctx, rq, errNoEndpoint)
	}
}

// shutdown stops the metrics listener, if there is one; a scrape in
// flight is not worth waiting for.
func (m *metricsServer) shutdown() {
	m.mu.Lock()
	srv := m.srv
	m.mu.Unlock()
	if srv != nil {
		_ = srv.Shutdown()
	}
}
