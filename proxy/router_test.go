package proxy

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestRouteTableCovered: every row of the route table serves a case of
// TestRouteMethods, so a row added without its case fails here.
func TestRouteTableCovered(t *testing.T) {
	s := &Server{}
	covered := map[*route]bool{}
	for _, c := range routeCases {
		var rc fasthttp.RequestCtx
		rc.Request.SetRequestURI(c.path)
		for i := 0; i+1 < len(c.h); i += 2 {
			rc.Request.Header.Set(c.h[i], c.h[i+1])
		}
		rt, _ := s.match(&rc)
		if rt == nil {
			t.Errorf("case %s: %s matches no route", c.name, c.path)
			continue
		}
		covered[rt] = true
	}
	for i := range routes {
		if rt := &routes[i]; !covered[rt] {
			t.Errorf("route %s %s (dialect %d) has no case in routeCases", rt.name, rt.pattern, rt.dialect)
		}
	}
}

// TestMatch: the matcher's path variables and its near misses.
func TestMatch(t *testing.T) {
	s := &Server{}
	for _, c := range []struct {
		path, draft      string
		name, id, sub    string
		wantDraft, found bool
	}{
		{path: uploadsPath, name: "tus_create", found: true},
		{path: uploadsPath + "/", draft: "8", name: "ietf_create", wantDraft: true, found: true},
		{path: uploadsPath + "/abc/", name: "tus_upload", id: "abc", found: true},
		{path: uploadsPath + "/a/b", draft: "3", name: "ietf_upload", id: "a/b", wantDraft: true, found: true},
		{path: uploadsPath + "x", name: "asset", id: "upload-resumablex", found: true},
		{path: "/api/v1/assets/", name: "asset", found: true},
		{path: "/api/v1/webhooks///", name: "webhooks", found: true},
		{path: "/api/v1/webhooks//w1//", name: "webhooks", id: "w1", found: true},
		{path: "/api/v1/webhooks/w1/deliveries/", name: "webhooks", id: "w1", sub: "deliveries", found: true},
		{path: "/api/v1/webhooks/w1/deliveries/x", name: "webhooks", id: "w1", sub: "deliveries/x", found: true},
		{path: "/api/v1/webhooksx"},
		{path: "/api/v1/direct-uploads/d1/tus", name: "direct_tus", id: "d1", sub: "tus", found: true},
		{path: "/api/v1/direct-uploads/tus", name: "direct_upload", id: "tus", found: true},
		{path: "/sign/assets/uploads/a1", name: "download", id: "a1", found: true},
		{path: "/page/", name: "page", found: true},
		{path: "/metrics", name: "metrics", found: true},
		{path: "/healthz/"},
		{path: "/api/v1/assets"},
	} {
		var rc fasthttp.RequestCtx
		rc.Request.SetRequestURI(c.path)
		if c.draft != "" {
			rc.Request.Header.Set("Upload-Draft-Interop-Version", c.draft)
		}
		rt, p := s.match(&rc)
		if !c.found {
			if rt != nil {
				t.Errorf("%s: got route %s, want none", c.path, rt.name)
			}
			continue
		}
		if rt == nil {
			t.Errorf("%s: got no route, want %s", c.path, c.name)
			continue
		}
		if rt.name != c.name || p.id != c.id || p.sub != c.sub || (p.draft != nil) != c.wantDraft {
			t.Errorf("%s: got %s id %q sub %q draft %v, want %s id %q sub %q draft %v",
				c.path, rt.name, p.id, p.sub, p.draft != nil, c.name, c.id, c.sub, c.wantDraft)
		}
	}
}

// TestMatchAllocs: matching costs the path's string and the params, on
// every request, whatever the table's length.
func TestMatchAllocs(t *testing.T) {
	s := &Server{}
	var rc fasthttp.RequestCtx
	rc.Request.SetRequestURI(uploadsPath + "/abc")
	rc.Request.Header.Set("Tus-Resumable", tusVersion)
	if got := testing.AllocsPerRun(100, func() { s.match(&rc) }); got > 2 {
		t.Errorf("match: got %v allocations, want at most 2", got)
	}
}

// methodSink keeps methodOf's answer alive, as a request does.
var methodSink string

// TestMethodOf: the method every request logs, counts and routes by is
// the request's own, and a known one costs no allocation.
func TestMethodOf(t *testing.T) {
	for _, m := range []string{"HEAD", "PATCH", "POST", "GET", "OPTIONS", "DELETE", "PUT", "PROPFIND", "patch"} {
		var rc fasthttp.RequestCtx
		rc.Request.Header.SetMethod(m)
		if got := methodOf(&rc); got != m {
			t.Errorf("methodOf(%s) = %q", m, got)
		}
	}
	var rc fasthttp.RequestCtx
	rc.Request.Header.SetMethod("PATCH")
	if n := testing.AllocsPerRun(100, func() { methodSink = methodOf(&rc) }); n != 0 {
		t.Errorf("methodOf(PATCH): %v allocations, want 0", n)
	}
}
