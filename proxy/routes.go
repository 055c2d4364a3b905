package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
)

// request is what handlers share about one request: its id, its route
// (a metrics label) and, once known, the account and upload it concerns.
type request struct {
	id       string
	route    string
	method   string
	account  string
	uploadID string
	allow    string // Allow header for a 405
	// expires is the expiry of the upload the request concerns, once
	// loaded and while it can expire (zero otherwise).
	expires time.Time
	// body is the request body reader once a handler started reading it.
	body *bodyReader
	// bodyRoute marks requests that may carry an upload body.
	bodyRoute bool
	// ctx is the parent of the handlers' contexts: the server's base,
	// with the request's span when tracing (span non-nil).
	ctx  context.Context
	span trace.Span
	// principal is who the request acts for once signed in (authn.go):
	// its account, and the policy of its credential (a direct upload
	// URL's grant).
	principal *principal
}

func (rq *request) attrs() []any {
	a := []any{slog.String("request_id", rq.id), slog.String("route", rq.route), slog.String("method", rq.method)}
	if rq.account != "" {
		a = append(a, slog.String("account", rq.account))
	}
	if rq.uploadID != "" {
		a = append(a, slog.String("upload_id", rq.uploadID))
	}
	return a
}

// Paths of the API; the route table below is where each is served.
const (
	assetsPath   = "/api/v1/assets/"
	uploadsPath  = "/api/v1/assets/upload-resumable"
	webhooksPath = "/api/v1/webhooks"
	quotaPath    = "/api/v1/quota"
	// directPath is the direct upload API, and a direct upload's URL
	// {base}/api/v1/direct-uploads/{id}/tus?token={token} (direct.go).
	directPath   = "/api/v1/direct-uploads"
	downloadPath = "/sign/assets/uploads/"
	pagePath     = "/page/"
)

// methodOf is the request's method as a string; the methods the routes
// serve are constants, not a copy made per request.
func methodOf(ctx *fasthttp.RequestCtx) string {
	m := ctx.Method()
	for _, known := range [...]string{fasthttp.MethodHead, fasthttp.MethodPatch, fasthttp.MethodPost, fasthttp.MethodGet,
		fasthttp.MethodOptions, fasthttp.MethodDelete, fasthttp.MethodPut} {
		if string(m) == known {
			return known
		}
	}
	return string(m)
}

// newRequestID returns the client's X-Request-Id when it is sane, else a
// random one.
func newRequestID(ctx *fasthttp.RequestCtx) string {
	if v := ctx.Request.Header.Peek("X-Request-Id"); len(v) > 0 && len(v) <= 64 && validID(string(v)) {
		return string(v)
	}
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// handle is the fasthttp handler: what every request gets (request id,
// span, metrics, the per-client limit), then its route's chain.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	start := time.Now()
	rq := &request{id: newRequestID(ctx), method: methodOf(ctx), route: "other", ctx: s.base}
	ctx.Response.Header.Set("X-Request-Id", rq.id)
	if s.tel.tracer != nil {
		s.startRequestSpan(ctx, rq)
	}
	flushEachResponse(ctx) // a later 104 on this connection must not overtake it (ietf_interim.go)
	defer func() {
		if p := recover(); p != nil {
			ctx.Response.Reset()
			ctx.SetConnectionClose()
			s.writeError(ctx, rq, fmt.Errorf("proxy: panic: %v", p))
		}
		d := time.Since(start)
		s.metrics.observe(rq.route, rq.method, ctx.Response.StatusCode(), d)
		if rq.span != nil {
			endRequestSpan(rq, ctx.Response.StatusCode())
		}
		if s.log.Enabled(context.Background(), slog.LevelDebug) {
			s.log.Debug("request", append(rq.attrs(), slog.Int("status", ctx.Response.StatusCode()), slog.Duration("took", d))...)
		}
	}()

	if client, ok := s.clients.client(peerAddr(ctx.RemoteAddr()), ctx.Request.Header.PeekAll("X-Forwarded-For")); ok {
		if !s.clients.acquire(client) {
			ctx.Response.Header.Set("Tus-Resumable", tusVersion)
			rq.bodyRoute = rq.method == fasthttp.MethodPost || rq.method == fasthttp.MethodPatch
			s.fail(ctx, rq, errClientFull)
			return
		}
		defer s.clients.release(client)
	}

	rt, p := s.match(ctx)
	if rt == nil {
		s.writeError(ctx, rq, errNoEndpoint)
		return
	}
	s.serveRoute(ctx, rq, rt, p)
}

// requestContext is a handler's own context: fasthttp's RequestCtx is not
// passed downstream (its Done fires only at shutdown, and it is recycled
// after the handler returns). It carries the request's span, if any.
func (s *Server) requestContext(rq *request) (context.Context, context.CancelFunc) {
	return context.WithCancel(rq.ctx)
}

// routes is every route the server serves, tried in order: the first row
// whose path (and dialect) fits serves the request.
var routes = routeTable()

func routeTable() []route {
	// The upload endpoint's two dialects, and the read-only resources.
	tus := route{dialect: tusDialect, headers: []string{"Tus-Resumable", tusVersion}, cors: true, override: true,
		options: tusOptionsOf, check: tusCheck, auth: authKey, body: "POST, PATCH", limit: true,
		serve: (*Server).tusServe, expect: on(tusFor, tusProtocol.expect)}
	draft := route{dialect: draftDialect, cors: true,
		options: tusOptionsOf, check: draftCheck, auth: authKey, body: "POST, PUT, PATCH", limit: true,
		serve: on(draftFor, draftProtocol.serve), expect: on(draftFor, draftProtocol.expect)}
	read := route{allow: "GET, HEAD, OPTIONS", cors: true, options: optionsAllow}
	const (
		uploadAllow = "OPTIONS, HEAD, GET, PATCH, DELETE"
		tusCreate   = "OPTIONS, POST"
		draftCreate = "OPTIONS, POST, PUT" // creation is any request with content (the draft: POST and PUT here)
		// Whatever an uploader stored, a browser must not run it as a
		// page of this origin: no sniffing, no script, no plugin (and the
		// body is a file to save: Content-Disposition).
		downloadCSP = "default-src 'none'; sandbox"
	)
	return []route{
		with(tus, route{name: "tus_create", pattern: uploadsPath, match: exact(uploadsPath), allow: tusCreate}),
		with(draft, route{name: "ietf_create", pattern: uploadsPath, match: exact(uploadsPath), allow: draftCreate}),
		with(tus, route{name: "tus_upload", pattern: uploadsPath + "/{id}", match: under(uploadsPath+"/", false), allow: uploadAllow}),
		with(draft, route{name: "ietf_upload", pattern: uploadsPath + "/{id}", match: under(uploadsPath+"/", false), allow: uploadAllow}),
		with(read, route{name: "asset", pattern: assetsPath + "{id}", match: under(assetsPath, true), auth: authKey,
			serve: on(assetsOf, (*assetsAPI).serve)}),

		{name: "webhooks", pattern: webhooksPath, match: tree(webhooksPath, shapeCollection),
			allow: "GET, POST", auth: authKey, body: "POST", serve: on(webhooksOf, (*webhooksAPI).serve)},
		{name: "webhooks", pattern: webhooksPath + "/{id}", match: tree(webhooksPath, shapeItem),
			allow: "GET, DELETE", auth: authKey, serve: on(webhooksOf, (*webhooksAPI).serve)},
		{name: "webhooks", pattern: webhooksPath + "/{id}/deliveries", match: tree(webhooksPath, "deliveries"),
			allow: "GET", auth: authKey, serve: on(webhooksOf, (*webhooksAPI).serve)},
		{name: "webhooks", pattern: webhooksPath + "/{id}/*", match: tree(webhooksPath, shapeOther), serve: plain(noEndpoint)},

		with(read, route{name: "quota", pattern: quotaPath, match: exact(quotaPath), auth: authKey, serve: on(quotaOf, (*quotaAPI).serve)}),

		// The token of a direct upload URL stands in for the API key, and
		// its CORS and methods are the grant's policy's (authGrant).
		{name: "direct_tus", pattern: directPath + "/{id}/tus", match: tree(directPath, "tus"),
			headers: []string{"Tus-Resumable", tusVersion}, override: true, cors: true, options: grantOptions,
			check: grantCheck, auth: authGrant, body: "POST, PATCH", limit: true, serve: on(directOf, (*directAPI).serveGrant)},
		{name: "direct_upload", pattern: directPath, match: tree(directPath, shapeCollection),
			allow: "POST, OPTIONS", cors: true, options: optionsPreflight, auth: authKey, body: "POST", serve: on(directOf, (*directAPI).create)},
		{name: "direct_upload", pattern: directPath + "/{id}", match: tree(directPath, shapeItem),
			allow: "DELETE, OPTIONS", cors: true, options: optionsPreflight, auth: authKey, serve: on(directOf, (*directAPI).revoke)},
		{name: "direct_upload", pattern: directPath + "/{id}/*", match: tree(directPath, shapeOther), cors: true, serve: plain(noEndpoint)},

		with(read, route{name: "download", pattern: downloadPath + "{id}?token=", match: rest(downloadPath),
			headers: []string{"X-Content-Type-Options", "nosniff", "Content-Security-Policy", downloadCSP},
			serve:   on(assetsOf, (*assetsAPI).download)}),
		{name: "page", pattern: "/", match: exactly("/"), allow: "GET, HEAD", serve: plain(servePage)},
		{name: "page", pattern: pagePath + "{file}", match: rest(pagePath), allow: "GET, HEAD", serve: plain(servePage)},
		{name: "healthz", pattern: "/healthz", match: exactly("/healthz"), serve: plain(serveHealthz)},
		{name: "readyz", pattern: "/readyz", match: exactly("/readyz"), serve: on(readyOf, (*readiness).serve)},
		{name: "metrics", pattern: "/metrics", match: exactly("/metrics"), serve: on(metricsOf, (*metricsServer).route),
			off: func(s *Server) bool { return s.cfg.MetricsElsewhere }},
	}
}

// with is row r on the defaults of its kind: r's set fields win.
func with(kind, r route) route {
	kind.name, kind.pattern, kind.match = r.name, r.pattern, r.match
	if r.allow != "" {
		kind.allow = r.allow
	}
	if r.headers != nil {
		kind.headers = r.headers
	}
	if r.auth != authNone {
		kind.auth = r.auth
	}
	if r.serve != nil {
		kind.serve = r.serve
	}
	return kind
}
