package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
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
	// direct is the grant a creation through a direct upload URL uses
	// (direct_tus.go): its id and its one-time claim.
	direct *sessionstore.DirectUpload
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

const assetsPath = "/api/v1/assets/"
const downloadPath = "/sign/assets/uploads/"

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

// handle is the fasthttp handler: it routes by path and method.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	start := time.Now()
	rq := &request{id: newRequestID(ctx), method: string(ctx.Method()), route: "other", ctx: s.base}
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

	path := string(ctx.Path())
	switch {
	case path == uploadsPath || path == uploadsPath+"/":
		rq.route = "tus_create"
		s.tus(ctx, rq, "")
	case strings.HasPrefix(path, uploadsPath+"/"):
		rq.route = "tus_upload"
		s.tus(ctx, rq, strings.TrimSuffix(path[len(uploadsPath)+1:], "/"))
	case strings.HasPrefix(path, assetsPath):
		rq.route = "asset"
		s.asset(ctx, rq, strings.TrimSuffix(path[len(assetsPath):], "/"))
	case path == webhooksPath || strings.HasPrefix(path, webhooksPath+"/"):
		rq.route = "webhooks"
		s.webhooks(ctx, rq, path[len(webhooksPath):])
	case path == quotaPath || path == quotaPath+"/":
		rq.route = "quota"
		s.quota(ctx, rq)
	case path == directPath || strings.HasPrefix(path, directPath+"/"):
		s.directUploads(ctx, rq, path[len(directPath):])
	case strings.HasPrefix(path, downloadPath):
		rq.route = "download"
		s.download(ctx, rq, path[len(downloadPath):])
	case path == "/" || strings.HasPrefix(path, pagePath):
		s.servePage(ctx, rq, path)
	case path == "/healthz":
		rq.route = "healthz"
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("ok\n")
	case path == "/readyz":
		rq.route = "readyz"
		s.ready(ctx, rq)
	case path == "/metrics" && !s.cfg.MetricsElsewhere:
		rq.route = "metrics"
		s.writeMetrics(ctx, rq)
	default:
		s.writeError(ctx, rq, errNoEndpoint)
	}
}

// requestContext is a handler's own context: fasthttp's RequestCtx is not
// passed downstream (its Done fires only at shutdown, and it is recycled
// after the handler returns). It carries the request's span, if any.
func (s *Server) requestContext(rq *request) (context.Context, context.CancelFunc) {
	return context.WithCancel(rq.ctx)
}

// tus serves the TUS endpoint: id is "" for the creation URL.
func (s *Server) tus(ctx *fasthttp.RequestCtx, rq *request, id string) {
	if v, ok := draftOf(&ctx.Request.Header); ok {
		s.ietf(ctx, rq, v, id) // the IETF draft's front door (ietf.go)
		return
	}
	ctx.Response.Header.Set("Tus-Resumable", tusVersion)
	s.cors(ctx)
	method := tusMethod(ctx)
	rq.method = method
	rq.bodyRoute = method == fasthttp.MethodPost || method == fasthttp.MethodPatch
	if method == fasthttp.MethodOptions {
		ctx.Response.Header.Set("Allow", tusAllow(id)) // RFC 9110 9.3.7
		s.tusOptions(ctx)
		return
	}
	if id != "" && !validID(id) {
		s.fail(ctx, rq, errNotFound)
		return
	}
	rq.uploadID = id
	rctx, cancel := s.requestContext(rq)
	defer cancel()
	if err := s.tusDispatch(rctx, ctx, rq, method, id); err != nil {
		s.fail(ctx, rq, err)
	}
}

// tusMethod is a TUS request's method: X-HTTP-Method-Override's on a POST
// that carries one.
func tusMethod(ctx *fasthttp.RequestCtx) string {
	method := string(ctx.Method())
	if method == fasthttp.MethodPost {
		if ov := ctx.Request.Header.Peek("X-HTTP-Method-Override"); len(ov) > 0 {
			method = strings.ToUpper(strings.TrimSpace(string(ov)))
		}
	}
	return method
}

func (s *Server) tusDispatch(rctx context.Context, ctx *fasthttp.RequestCtx, rq *request, method, id string) error {
	if err := s.tusAdmit(rctx, ctx, rq, method, id); err != nil {
		return err
	}
	return s.tusServe(rctx, ctx, rq, method, id)
}

// tusServe serves an admitted TUS request (rq.account is set).
func (s *Server) tusServe(rctx context.Context, ctx *fasthttp.RequestCtx, rq *request, method, id string) error {
	if (method == fasthttp.MethodPatch || method == fasthttp.MethodPost) && hasBody(ctx) {
		release, ok := s.streams.acquire(rq.account)
		if !ok {
			return errTooManyBodies
		}
		defer release()
	}
	switch method {
	case fasthttp.MethodPost:
		return s.tusCreate(rctx, ctx, rq)
	case fasthttp.MethodHead, fasthttp.MethodGet:
		return s.tusHead(rctx, ctx, rq, id)
	case fasthttp.MethodPatch:
		return s.tusPatch(rctx, ctx, rq, id)
	default:
		return s.tusDelete(rctx, ctx, rq, id)
	}
}

// tusAdmit checks what every TUS request but OPTIONS needs: Tus-Resumable,
// a method the resource has, and an API key, whose account it sets.
func (s *Server) tusAdmit(rctx context.Context, ctx *fasthttp.RequestCtx, rq *request, method, id string) error {
	if string(ctx.Request.Header.Peek("Tus-Resumable")) != tusVersion {
		return errTusVersion
	}
	switch {
	case id == "" && method == fasthttp.MethodPost,
		id != "" && (method == fasthttp.MethodHead || method == fasthttp.MethodGet ||
			method == fasthttp.MethodPatch || method == fasthttp.MethodDelete):
	default:
		rq.allow = tusAllow(id)
		return errMethod
	}
	return s.signIn(rctx, ctx, rq)
}

// tusAllow is the Allow of a TUS resource: the creation URL (id "") or an
// upload. GET of an upload answers as its HEAD (RFC 9110 9.3.2: HEAD is
// GET without content).
func tusAllow(id string) string {
	if id == "" {
		return "OPTIONS, POST"
	}
	return "OPTIONS, HEAD, GET, PATCH, DELETE"
}

// signIn authenticates the request's API key and sets its account.
func (s *Server) signIn(rctx context.Context, ctx *fasthttp.RequestCtx, rq *request) error {
	account, err := s.authenticate(rctx, ctx)
	if err != nil {
		return err
	}
	rq.account = account
	return nil
}

// tusOptions answers discovery and CORS preflight, without auth.
func (s *Server) tusOptions(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Tus-Version", tusVersion)
	h.Set("Tus-Max-Size", tusMaxSize)
	h.Set("Tus-Extension", tusExtensions)
	h.Set("Tus-Checksum-Algorithm", pipeline.SupportedChecksums)
	h.Set("Upload-Limit", s.uploadLimit(time.Time{})) // the IETF draft's discovery
	s.preflight(ctx, "OPTIONS, POST, HEAD, GET, PATCH, DELETE")
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

// fail answers err. On a route that may carry a body, the unread rest of
// the body is drained when small, else the connection is closed, so it is
// never parsed as the next request.
func (s *Server) fail(ctx *fasthttp.RequestCtx, rq *request, err error) {
	linger := rq.bodyRoute && s.settleBody(ctx, rq)
	s.writeError(ctx, rq, err)
	setErrorExpires(ctx, rq)
	if linger {
		s.lingerClose(ctx)
	}
}

// setErrorExpires adds Upload-Expires to a TUS 409 or 460 about an upload
// that will expire: the expiration extension has it on every answer about
// such an upload, and a client told to resume (409) or resend (460) needs
// to know until when it may.
func setErrorExpires(ctx *fasthttp.RequestCtx, rq *request) {
	switch ctx.Response.StatusCode() {
	case fasthttp.StatusConflict, StatusChecksumMismatch:
		if !rq.expires.IsZero() {
			ctx.Response.Header.Set("Upload-Expires", rq.expires.UTC().Format(httpTime))
		}
	}
}

var errContentType = codeUnsupportedContentType.err()

// isOffsetType reports whether a Content-Type is TUS's chunk type.
func isOffsetType(ct []byte) bool {
	mt, _, _ := strings.Cut(string(ct), ";")
	return strings.EqualFold(strings.TrimSpace(mt), offsetType)
}

// baseURL is the public base URL for Location and download_url:
// --public-url, else X-Forwarded-Proto/Host, else the request's Host.
func (s *Server) baseURL(ctx *fasthttp.RequestCtx) string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	scheme := "http"
	if ctx.IsTLS() {
		scheme = "https"
	}
	if p := firstValue(ctx.Request.Header.Peek("X-Forwarded-Proto")); p == "http" || p == "https" {
		scheme = p
	}
	host := firstValue(ctx.Request.Header.Peek("X-Forwarded-Host"))
	if host == "" || !validHost(host) {
		host = string(ctx.Host())
	}
	return scheme + "://" + host
}

func firstValue(v []byte) string {
	first, _, _ := strings.Cut(string(v), ",")
	return strings.ToLower(strings.TrimSpace(first))
}

func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == '?' || c == '#' || c == '@' || c == '\\' {
			return false
		}
	}
	return true
}

// errStoreDataLost is readyz's answer on the check that found the session
// store emptied (sessionstore.ErrDataLost).
var errStoreDataLost = codeStoreDataLost.err()

// ready checks the session store and the storage, and that the storage
// has at least --min-free-space free.
func (s *Server) ready(ctx *fasthttp.RequestCtx, rq *request) {
	rctx, cancel := context.WithTimeout(s.base, 5*time.Second)
	defer cancel()
	if err := s.store.Ping(rctx); errors.Is(err, sessionstore.ErrDataLost) {
		// Reported on this check only: the node puts back what it owns
		// and serves on (static keys never depended on the store).
		seedErr := s.SeedStaticKeys(rctx)
		s.writeError(ctx, rq, fmt.Errorf("proxy: readyz: %w: %w (re-seeding static keys: %v)", errStoreDataLost, err, seedErr))
		return
	} else if err != nil {
		s.writeError(ctx, rq, fmt.Errorf("proxy: readyz: session store: %w: %w", errUnavailable, err))
		return
	}
	if err := s.pipe.Sink().Ping(rctx); err != nil {
		s.writeError(ctx, rq, fmt.Errorf("proxy: readyz: storage: %w: %w", errUnavailable, err))
		return
	}
	if err := s.checkFreeSpace(); err != nil {
		s.writeError(ctx, rq, fmt.Errorf("proxy: readyz: %w", err))
		return
	}
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString("ready\n")
}
