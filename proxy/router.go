package proxy

import (
	"context"
	"strings"

	"github.com/valyala/fasthttp"
)

// route is one row of the route table (routes.go). Every request goes
// through the same chain (serveRoute): the route's name becomes the
// request's metrics and tracing label, its headers and CORS are set, an
// OPTIONS gets the route's answer, the route's checks and its methods
// (405 with Allow) come before the API key, then the per-account stream
// limit for a body, then the handler. A refusal is rendered by the
// route's dialect: TUS JSON, or the draft's problem+json.
type route struct {
	// name is the metrics and tracing label (several rows may share one).
	name string
	// pattern is the path the row serves, as docs show it; match decides.
	pattern string
	match   pathMatch
	// dialect: the TUS endpoint serves TUS and the IETF draft on the same
	// paths, told apart by the request's headers (draftOf).
	dialect dialect
	// allow is the route's methods: the Allow of a 405 and of OPTIONS.
	// "" takes every method (or leaves the check to the handler).
	allow string
	// headers are set first on every answer of the route (name, value).
	headers []string
	// override: the method is X-HTTP-Method-Override's on a POST (TUS).
	override bool
	cors     bool
	// options answers OPTIONS, without auth; nil: OPTIONS is a method
	// like any other.
	options func(s *Server, rc *fasthttp.RequestCtx, rt *route, p *params)
	// check runs before the method check: what makes any method's answer
	// on this path a refusal (an upload id that cannot exist, TUS's
	// version).
	check func(rc *fasthttp.RequestCtx, rq *request, p *params) error
	// auth is the route's authenticator (authn.go): the request acts for
	// the principal it signs in; authNone: for no one.
	auth authKind
	// body is the methods whose requests may carry a body: a refusal of
	// one drains or closes it, so it is never parsed as the next request.
	body string
	// limit: a body counts against the account's streams on this node.
	limit bool
	// serve is the handler; its error is the answer.
	serve func(s *Server, ctx context.Context, rc *fasthttp.RequestCtx, rq *request, p *params) error
	// off, when set, takes the row out of a server's table.
	off func(s *Server) bool
	// expect, when set, is why a request with a body would be refused
	// before the body is read: the Expect handler (expect.go) answers
	// that instead of 100 Continue. Without it the body is welcome.
	expect func(s *Server, ctx context.Context, rc *fasthttp.RequestCtx, rq *request, p *params) error
}

// params are what matching found: the path's variables and, on the
// draft's routes, the draft's request.
type params struct {
	// id is the path's {id}, sub what follows it in a subtree.
	id, sub string
	draft   *draftReq
}

// dialect is which protocol a row serves on a shared path.
type dialect uint8

const (
	anyDialect dialect = iota
	tusDialect
	draftDialect
)

// pathMatch reports whether a path is the route's, and its variables.
type pathMatch func(path string) (id, sub string, ok bool)

// exactly matches p alone.
func exactly(p string) pathMatch {
	return func(path string) (string, string, bool) { return "", "", path == p }
}

// exact matches p with or without a trailing slash.
func exact(p string) pathMatch {
	return func(path string) (string, string, bool) { return "", "", path == p || path == p+"/" }
}

// under matches prefix and what follows as {id}, one trailing slash
// dropped; an empty {id} only when empty is set (the handler refuses it).
// fasthttp's Path has collapsed doubled slashes already.
func under(prefix string, empty bool) pathMatch {
	return func(path string) (string, string, bool) {
		if !strings.HasPrefix(path, prefix) {
			return "", "", false
		}
		id := strings.TrimSuffix(path[len(prefix):], "/")
		return id, "", id != "" || empty
	}
}

// rest matches prefix and takes all that follows as {id}.
func rest(prefix string) pathMatch {
	return func(path string) (string, string, bool) {
		if !strings.HasPrefix(path, prefix) {
			return "", "", false
		}
		return path[len(prefix):], "", true
	}
}

// subtree shapes: the collection, one item, an item's sub-resource named
// by the shape, or any other path below an item.
const (
	shapeCollection = ""
	shapeItem       = "{id}"
	shapeOther      = "*"
)

// tree matches a resource tree at prefix: the path below it, slashes
// trimmed, is "{id}/{sub}", and shape picks the collection (no id), an
// item (no sub), the sub-resource named shape, or shapeOther (any sub: a
// row after those of the named sub-resources).
func tree(prefix, shape string) pathMatch {
	return func(path string) (string, string, bool) {
		if path != prefix && !strings.HasPrefix(path, prefix+"/") {
			return "", "", false
		}
		id, sub, _ := strings.Cut(strings.Trim(path[len(prefix):], "/"), "/")
		switch shape {
		case shapeCollection:
			return "", "", id == ""
		case shapeItem:
			return id, "", id != "" && sub == ""
		case shapeOther:
			return id, sub, sub != ""
		}
		return id, sub, sub == shape
	}
}

// match finds the request's route: the first row whose path and dialect
// fit, in table order.
func (s *Server) match(rc *fasthttp.RequestCtx) (*route, *params) {
	path := string(rc.Path())
	var (
		v                   draft
		isDraft, draftKnown bool
	)
	for i := range routes {
		rt := &routes[i]
		id, sub, ok := rt.match(path)
		if !ok || rt.off != nil && rt.off(s) {
			continue
		}
		if rt.dialect != anyDialect {
			if !draftKnown {
				v, isDraft = draftOf(&rc.Request.Header)
				draftKnown = true
			}
			if isDraft != (rt.dialect == draftDialect) {
				continue
			}
		}
		p := &params{id: id, sub: sub}
		if rt.dialect == draftDialect {
			p.draft = &draftReq{v: v, provided: -1, expected: -1}
		}
		return rt, p
	}
	return nil, nil
}

// serveRoute is the chain every routed request goes through. A
// credential whose policy decides the route's CORS and methods (a direct
// upload URL's) signs in first; a refusal of it is answered after the
// CORS headers and OPTIONS, like any other.
func (s *Server) serveRoute(rc *fasthttp.RequestCtx, rq *request, rt *route, p *params) {
	rq.route = rt.name
	for i := 0; i+1 < len(rt.headers); i += 2 {
		rc.Response.Header.Set(rt.headers[i], rt.headers[i+1])
	}
	if rt.override {
		rq.method = tusMethod(rc)
	}
	rq.bodyRoute = hasMethod(rt.body, rq.method)
	ctx, cancel := s.requestContext(rq)
	defer cancel()
	var err error
	if rt.auth.first() {
		err = rq.signedIn(s.authn.signIn(ctx, rc, rt.auth, p))
	}
	if rt.cors && !rq.principal.cors(rc) {
		s.cors(rc)
	}
	if rq.method == fasthttp.MethodOptions && rt.options != nil {
		rt.options(s, rc, rt, p)
		return
	}
	if err == nil {
		err = s.serveAdmitted(ctx, rc, rq, rt, p)
	}
	if err != nil {
		s.refuse(rc, rq, p, err)
	}
}

// serveAdmitted admits the request, holds a stream for its body when the
// route limits them, and serves it.
func (s *Server) serveAdmitted(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, rt *route, p *params) error {
	if err := s.admit(ctx, rc, rq, rt, p); err != nil {
		return err
	}
	if rt.limit {
		release, err := s.holdStream(rc, rq)
		if err != nil {
			return err
		}
		defer release()
	}
	return rt.serve(s, ctx, rc, rq, p)
}

// holdStream takes one of the account's streams on this node for an
// upload body, if the request carries one; release gives it back.
func (s *Server) holdStream(rc *fasthttp.RequestCtx, rq *request) (release func(), err error) {
	if !rq.bodyRoute || !hasBody(rc) {
		return func() {}, nil
	}
	release, ok := s.streams.acquire(rq.account)
	if !ok {
		return nil, errTooManyBodies
	}
	return release, nil
}

// admit runs the route's checks, its method check, its authenticator
// (unless signed in already) and the policy of the principal; the Expect
// handler admits the same way before a body is sent.
func (s *Server) admit(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, rt *route, p *params) error {
	if rt.check != nil {
		if err := rt.check(rc, rq, p); err != nil {
			return err
		}
	}
	if rt.allow != "" && !hasMethod(rt.allow, rq.method) {
		rq.allow = rt.allow
		return errMethod
	}
	if rt.auth != authNone && rq.principal == nil {
		if err := rq.signedIn(s.authn.signIn(ctx, rc, rt.auth, p)); err != nil {
			return err
		}
	}
	return rq.principal.admit(rc, rq)
}

// refuse answers err in the request's dialect.
func (s *Server) refuse(rc *fasthttp.RequestCtx, rq *request, p *params, err error) {
	if p.draft != nil {
		s.ietfFail(rc, rq, p.draft, err)
		return
	}
	s.fail(rc, rq, err)
}

// hasMethod reports whether method is in the list ("GET, HEAD").
func hasMethod(list, method string) bool {
	for m := range strings.SplitSeq(list, ", ") {
		if m == method {
			return true
		}
	}
	return false
}

// optionsAllow answers OPTIONS with the route's methods and preflight.
func optionsAllow(s *Server, rc *fasthttp.RequestCtx, rt *route, _ *params) {
	rc.Response.Header.Set("Allow", rt.allow) // RFC 9110 9.3.7
	s.preflight(rc, rt.allow)
	rc.SetStatusCode(fasthttp.StatusNoContent)
}

// optionsPreflight answers OPTIONS with the preflight only.
func optionsPreflight(s *Server, rc *fasthttp.RequestCtx, rt *route, _ *params) {
	s.preflight(rc, rt.allow)
	rc.SetStatusCode(fasthttp.StatusNoContent)
}

// noEndpoint is the handler of paths below a resource that has none
// there.
func noEndpoint(*fasthttp.RequestCtx, *request, *params) error {
	return errNoEndpoint
}
