package proxy

import (
	"github.com/valyala/fasthttp"
)

// CORS headers. Browsers only let scripts read response headers that are
// exposed, on every response, not just the preflight (tus-js-client reads
// Location and Upload-Offset from real responses).
const (
	corsExposeHeaders = "Upload-Offset, Location, Upload-Length, Tus-Version, Tus-Resumable, Tus-Max-Size, " +
		"Tus-Extension, Tus-Checksum-Algorithm, Upload-Metadata, Upload-Defer-Length, Upload-Concat, " +
		"Upload-Expires, Upload-Checksum, X-Request-Id, Retry-After, Content-Range, Accept-Ranges, " +
		"Upload-Complete, Upload-Incomplete, Upload-Limit"
	corsAllowHeaders = "Authorization, Content-Type, Tus-Resumable, Upload-Length, Upload-Metadata, " +
		"Upload-Offset, Upload-Defer-Length, Upload-Concat, Upload-Checksum, X-HTTP-Method-Override, " +
		"X-Requested-With, X-Request-Id, Range, " +
		"Upload-Complete, Upload-Incomplete, Upload-Draft-Interop-Version, Content-Disposition, Content-Digest, Repr-Digest"
	corsMaxAge = "86400"
)

// cors adds the CORS headers for an allowed Origin.
func (s *Server) cors(ctx *fasthttp.RequestCtx) bool {
	origin := ctx.Request.Header.Peek("Origin")
	if len(origin) == 0 {
		return false
	}
	h := &ctx.Response.Header
	if s.origins == nil {
		// Keys travel in a header, never in cookies: "*" is enough.
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Add("Vary", "Origin")
		if !s.origins[string(origin)] {
			return false
		}
		h.SetBytesV("Access-Control-Allow-Origin", origin)
	}
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
	return true
}

// preflight adds the preflight answer when the request is one.
func (s *Server) preflight(ctx *fasthttp.RequestCtx, methods string) {
	if len(ctx.Request.Header.Peek("Access-Control-Request-Method")) == 0 {
		return
	}
	if len(ctx.Response.Header.Peek("Access-Control-Allow-Origin")) == 0 {
		return
	}
	h := &ctx.Response.Header
	h.Set("Access-Control-Allow-Methods", methods)
	h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
	h.Set("Access-Control-Max-Age", corsMaxAge)
}
