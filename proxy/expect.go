package proxy

import (
	"context"
	"time"

	"github.com/valyala/fasthttp"
)

// expectTimeout bounds the store lookups (API key, session) of the Expect
// handler, which runs on the connection's goroutine before 100 Continue.
const expectTimeout = 5 * time.Second

// expect runs before fasthttp answers "100 Continue". An upload request
// that is sure to be refused gets its final status instead, before its
// body is sent: the route's admission (checks, method, API key) and its
// dialect's checks of headers, the upload's owner, offset and length run
// here first (without them, a client waiting for the 100 sent up to
// 64 MiB only to be refused). The handler checks again: the upload may
// move in between. The draft keeps 100 Continue: a 104 does not replace
// it.
func (s *Server) expect(rc *fasthttp.RequestCtx) int {
	rt, p := s.match(rc)
	if rt == nil || rt.expect == nil {
		return fasthttp.StatusContinue
	}
	method := methodOf(rc)
	if rt.override {
		method = tusMethod(rc)
	}
	if !hasMethod(rt.body, method) {
		return fasthttp.StatusContinue
	}
	rq := &request{id: newRequestID(rc), method: method, route: "tus_expect", uploadID: p.id}
	if p.draft != nil {
		rq.route = "ietf_expect"
	}
	ctx, cancel := context.WithTimeout(s.base, expectTimeout)
	defer cancel()
	err := s.admit(ctx, rc, rq, rt, p)
	if err == nil {
		err = rt.expect(s, ctx, rc, rq, p)
	}
	if err == nil {
		return fasthttp.StatusContinue
	}
	// fasthttp sends this response as it is, with its status, and closes
	// the connection: the client never sends the body.
	for i := 0; i+1 < len(rt.headers); i += 2 {
		rc.Response.Header.Set(rt.headers[i], rt.headers[i+1])
	}
	rc.Response.Header.Set("X-Request-Id", rq.id)
	s.cors(rc)
	s.refuse(rc, rq, p, err)
	status := rc.Response.StatusCode()
	s.metrics.observe(rq.route, rq.method, status, 0)
	return status
}

// expect is why a TUS creation or PATCH would be refused before its
// body is read, or nil: the same parse and check the handler runs.
func (t tusProtocol) expect(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, p *params) error {
	if rq.method == fasthttp.MethodPost {
		_, err := parseCreate(&rc.Request.Header)
		return err
	}
	_, _, err := t.checkPatch(ctx, rc, rq, p.id)
	return err
}

// expect is why a draft creation or append would be refused before
// its content is read, or nil: the same parse and check the handler runs.
func (t draftProtocol) expect(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, p *params) error {
	if p.id == "" {
		_, err := parseDraftCreate(p.draft.v, &rc.Request.Header, rc.QueryArgs())
		return err
	}
	_, _, err := t.checkPatch(ctx, rc, rq, p.draft, p.id)
	return err
}
