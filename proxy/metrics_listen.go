package proxy

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// metricsServer is the listener of its own that /metrics may be served
// on (--metrics-listen): a pod-internal or loopback port that operators
// scrape without going through the balancer.
type metricsServer struct {
	mu  sync.Mutex
	srv *fasthttp.Server
}

// ServeMetrics serves GET /metrics (and /healthz, for the scraper's own
// checks) on ln until Shutdown. Set Config.MetricsElsewhere so that the
// public listener stops answering /metrics.
func (s *Server) ServeMetrics(ln net.Listener) error {
	srv := &fasthttp.Server{
		Handler:               s.handleMetrics,
		Name:                  "roughy-metrics",
		NoDefaultServerHeader: true,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		MaxRequestBodySize:    4 << 10,
	}
	s.metricsSrv.mu.Lock()
	s.metricsSrv.srv = srv
	s.metricsSrv.mu.Unlock()
	if err := srv.Serve(ln); err != nil {
		return fmt.Errorf("proxy: serve metrics: %w", err)
	}
	return nil
}

// handleMetrics is the metrics listener's handler.
func (s *Server) handleMetrics(ctx *fasthttp.RequestCtx) {
	rq := &request{id: newRequestID(ctx), method: methodOf(ctx), route: "metrics", ctx: s.base}
	switch string(ctx.Path()) {
	case "/metrics":
		s.writeMetrics(ctx, rq)
	case "/healthz":
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("ok\n")
	default:
		s.writeError(ctx, rq, errNoEndpoint)
	}
}

// shutdownMetrics stops the metrics listener, if there is one; a scrape in
// flight is not worth waiting for.
func (s *Server) shutdownMetrics() {
	s.metricsSrv.mu.Lock()
	srv := s.metricsSrv.srv
	s.metricsSrv.mu.Unlock()
	if srv != nil {
		_ = srv.Shutdown()
	}
}
