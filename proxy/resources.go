package proxy

import (
	"context"

	"github.com/valyala/fasthttp"
)

// The route table's resources are types of their own, each holding the
// stores and settings it needs; *Server only wires them (attachResources)
// and runs the chain. A route row names a resource's handler with on.

// attachResources makes the server's resources from its configuration,
// store and pipeline.
func attachResources(s *Server) {
	s.authn = authenticators{
		key:   newKeyAuth(s.store, s.cfg.StaticKeys, s.cfg.KeyCacheTTL, s.metrics.authFailures, s.log),
		grant: &grantAuth{store: s.store, origins: s.origins},
	}
	s.assets = &assetsAPI{store: s.store, pipe: s.pipe, sign: s.sign, ttl: s.cfg.DownloadTTL,
		public: s.cfg.PublicURL, base: s.baseURL, log: s.log}
	s.direct = &directAPI{store: s.store, assets: s.assets, body: s.newBodyReader, base: s.baseURL, tus: s.tusServe}
	s.webhooks = &webhooksAPI{store: s.store, targets: s.cfg.WebhookTargets, assets: s.assets}
	s.quota = &quotaAPI{store: s.store, defaults: s.cfg.QuotaDefaults}
	s.ready = &readiness{store: s.store, pipe: s.pipe, keys: s.authn.key, base: s.base, freeSpace: s.checkFreeSpace}
	s.metricsSrv.write, s.metricsSrv.refuse, s.metricsSrv.base = s.writeMetrics, s.writeError, s.base
	s.metricsSrv.profiling = s.cfg.Profiling
}

// handler is a route's handler (route.serve).
type handler = func(s *Server, ctx context.Context, rc *fasthttp.RequestCtx, rq *request, p *params) error

// on is the route handler h of the server's resource of(s).
func on[T any](of func(*Server) T, h func(T, context.Context, *fasthttp.RequestCtx, *request, *params) error) handler {
	return func(s *Server, ctx context.Context, rc *fasthttp.RequestCtx, rq *request, p *params) error {
		return h(of(s), ctx, rc, rq, p)
	}
}

// plain is the route handler h, which answers from the request alone.
func plain(h func(*fasthttp.RequestCtx, *request, *params) error) handler {
	return func(_ *Server, _ context.Context, rc *fasthttp.RequestCtx, rq *request, p *params) error {
		return h(rc, rq, p)
	}
}

// The resources, for on.
func assetsOf(s *Server) *assetsAPI      { return s.assets }
func directOf(s *Server) *directAPI      { return s.direct }
func webhooksOf(s *Server) *webhooksAPI  { return s.webhooks }
func quotaOf(s *Server) *quotaAPI        { return s.quota }
func readyOf(s *Server) *readiness       { return s.ready }
func metricsOf(s *Server) *metricsServer { return &s.metricsSrv }
