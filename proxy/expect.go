package proxy

import (
	"context"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// expectTimeout bounds the store lookups (API key, session) of the Expect
// handler, which runs on the connection's goroutine before 100 Continue.
const expectTimeout = 5 * time.Second

// expect runs before fasthttp answers "100 Continue". An upload request
// that is sure to be refused gets its final status instead, before its
// body is sent: the handler's checks of headers, API key, the upload's
// owner, offset and length run here first (without them, a client waiting
// for the 100 sent up to 64 MiB only to be refused). The handler checks
// again: the upload may move in between.
func (s *Server) expect(ctx *fasthttp.RequestCtx) int {
	path := string(ctx.Path())
	var id string
	switch {
	case path == uploadsPath || path == uploadsPath+"/":
	case strings.HasPrefix(path, uploadsPath+"/"):
		id = strings.TrimSuffix(path[len(uploadsPath)+1:], "/")
	default:
		return fasthttp.StatusContinue
	}
	if v, ok := draftOf(&ctx.Request.Header); ok {
		return s.ietfExpect(ctx, v, id)
	}
	method := tusMethod(ctx)
	if method != fasthttp.MethodPatch && method != fasthttp.MethodPost {
		return fasthttp.StatusContinue
	}
	rq := &request{id: newRequestID(ctx), method: method, route: "tus_expect", uploadID: id}
	rctx, cancel := context.WithTimeout(s.base, expectTimeout)
	defer cancel()
	err := s.expectRefusal(rctx, ctx, rq, method, id)
	if err == nil {
		return fasthttp.StatusContinue
	}
	// fasthttp sends this response as it is, with its status, and closes
	// the connection: the client never sends the body.
	ctx.Response.Header.Set("Tus-Resumable", tusVersion)
	ctx.Response.Header.Set("X-Request-Id", rq.id)
	s.cors(ctx)
	s.writeError(ctx, rq, err)
	setErrorExpires(ctx, rq)
	status := ctx.Response.StatusCode()
	s.metrics.observe(rq.route, rq.method, status, 0)
	return status
}

// expectRefusal is why the TUS handler would refuse the request before
// reading its body, or nil.
func (s *Server) expectRefusal(rctx context.Context, ctx *fasthttp.RequestCtx, rq *request, method, id string) error {
	if id != "" && !validID(id) {
		return errNotFound
	}
	if err := s.tusAdmit(rctx, ctx, rq, method, id); err != nil {
		return err
	}
	if method == fasthttp.MethodPost {
		_, err := parseCreate(&ctx.Request.Header)
		return err
	}
	_, _, err := s.checkPatch(rctx, ctx, rq, id)
	return err
}
