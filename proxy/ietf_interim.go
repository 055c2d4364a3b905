package proxy

import (
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// interimTimeout bounds the write of one 104: a client that reads nothing
// must not hold the handler (the final response has its own limits).
const interimTimeout = 10 * time.Second

// interim sends a 104 (Upload Resumption Supported) with the request's
// interop version and the given header fields (name, value pairs), before
// the final response.
//
// fasthttp has no API for a 1xx other than its own 100 Continue, so the
// bytes go straight onto the connection. That is sound because nothing
// else writes to it meanwhile: the final response is written only after
// the handler returns, a 100 Continue was flushed before the handler ran,
// and every earlier response on the connection was flushed as soon as it
// was written (handle sets a write deadline on every request, which makes
// fasthttp flush instead of holding a response back for a pipelined
// request; see flushEachResponse). HTTP/1.0 clients get no 1xx (RFC 9110
// section 15.2). A failed write is left to the body read or the final
// response to report.
func interim(rc *fasthttp.RequestCtx, v draft, fields ...string) {
	if !rc.Request.Header.IsHTTP11() || rc.Conn() == nil {
		return
	}
	b := make([]byte, 0, 256)
	b = append(b, "HTTP/1.1 104 Upload Resumption Supported\r\nUpload-Draft-Interop-Version: "...)
	b = strconv.AppendInt(b, int64(v), 10)
	b = append(b, "\r\n"...)
	for i := 0; i+1 < len(fields); i += 2 {
		b = append(b, fields[i]...)
		b = append(b, ": "...)
		b = append(b, fields[i+1]...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	if rc.SetWriteDeadline(time.Now().Add(interimTimeout)) != nil {
		return
	}
	_, _ = rc.Conn().Write(b)
	_ = rc.SetWriteDeadline(time.Time{})
}

// flushEachResponse makes fasthttp flush this request's response as soon
// as it is written (it does so for every request whose handler set a
// write deadline), so that no response is still buffered when a later
// request on the connection writes a 104 on it. The deadline itself is
// none: downloads may take long.
func flushEachResponse(ctx *fasthttp.RequestCtx) {
	_ = ctx.SetWriteDeadline(time.Time{})
}
