package proxy

import (
	"context"
	"strings"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/valyala/fasthttp"
)

// The TUS 1.0.0 dialect of the upload routes (the route table's tus rows).

// tusMethod is a TUS request's method: X-HTTP-Method-Override's on a POST
// that carries one.
func tusMethod(ctx *fasthttp.RequestCtx) string {
	method := methodOf(ctx)
	if method == fasthttp.MethodPost {
		if ov := ctx.Request.Header.Peek("X-HTTP-Method-Override"); len(ov) > 0 {
			method = strings.ToUpper(strings.TrimSpace(string(ov)))
		}
	}
	return method
}

// tusCheck refuses, before the method check, an upload id that cannot
// exist and a request without Tus-Resumable 1.0.0.
func tusCheck(rc *fasthttp.RequestCtx, rq *request, p *params) error {
	if p.id != "" && !validID(p.id) {
		return errNotFound
	}
	rq.uploadID = p.id
	if string(rc.Request.Header.Peek("Tus-Resumable")) != tusVersion {
		return errTusVersion
	}
	return nil
}

// tusProtocol is the TUS dialect: it parses TUS requests into the
// shared front's calls (uploads.go) and renders their results.
type tusProtocol struct{ uploads }

func tusFor(s *Server) tusProtocol { return tusProtocol{uploadsOf(s)} }

// tusServe serves an admitted TUS request (rq.account is set): the tus
// rows' handler, and a direct upload URL's once its grant is checked.
func (s *Server) tusServe(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, p *params) error {
	return tusFor(s).serve(ctx, rc, rq, p)
}

func (t tusProtocol) serve(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, p *params) error {
	switch rq.method {
	case fasthttp.MethodPost:
		return t.create(ctx, rc, rq)
	case fasthttp.MethodHead, fasthttp.MethodGet:
		// GET of an upload answers as its HEAD (RFC 9110 9.3.2: HEAD is
		// GET without content).
		return t.head(ctx, rc, rq, p.id)
	case fasthttp.MethodPatch:
		return t.patch(ctx, rc, rq, p.id)
	default:
		return t.remove(ctx, rc, rq, p.id)
	}
}

// tusOptionsOf answers OPTIONS on an upload route of either dialect:
// discovery and CORS preflight, without auth.
func tusOptionsOf(s *Server, rc *fasthttp.RequestCtx, rt *route, p *params) {
	rc.Response.Header.Set("Allow", rt.allow) // RFC 9110 9.3.7
	s.tusOptions(rc)
	if p.draft != nil && p.draft.v >= 8 {
		// Appends are PATCHes of this media type (RFC 5789's
		// Accept-Patch; the draft asks for it from -09 on).
		rc.Response.Header.Set("Accept-Patch", partialUploadType)
	}
}

// tusOptions answers discovery and CORS preflight, without auth (also on
// a direct upload URL).
func (s *Server) tusOptions(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Tus-Version", tusVersion)
	h.Set("Tus-Max-Size", tusMaxSize)
	h.Set("Tus-Extension", tusExtensions)
	h.Set("Tus-Checksum-Algorithm", pipeline.SupportedChecksums)
	h.Set("Upload-Limit", uploadLimit(s.cfg.UploadExpiry, time.Time{})) // the IETF draft's discovery
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
