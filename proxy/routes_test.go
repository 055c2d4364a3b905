package proxy

import (
	"net/http"
	"testing"
)

// routeCase is what every route answers before it looks at a request's
// body or key: the 405 of a method it does not take (and its Allow), the
// OPTIONS answer, and whether a browser's preflight gets CORS headers.
type routeCase struct {
	name string
	path string
	h    []string // dialect headers
	// bad is a method the route refuses with 405 and Allow allow
	// ("" bad: every method is served).
	bad, allow string
	// options is OPTIONS' status, optionsAllow its Allow ("" none) and
	// acam the preflight's Access-Control-Allow-Methods ("" none).
	options            int
	optionsAllow, acam string
	// cors: the answer lets the page's origin read it.
	cors bool
}

var tusH = []string{"Tus-Resumable", "1.0.0"}
var draftH = []string{"Upload-Draft-Interop-Version", "8"}

const tusACAM = "OPTIONS, POST, HEAD, GET, PATCH, DELETE"

var routeCases = []routeCase{
	{"tus_create", uploadsPath, tusH, "GET", "OPTIONS, POST", 204, "OPTIONS, POST", tusACAM, true},
	{"tus_upload", uploadsPath + "/abc", tusH, "POST", "OPTIONS, HEAD, GET, PATCH, DELETE", 204, "OPTIONS, HEAD, GET, PATCH, DELETE", tusACAM, true},
	{"ietf_create", uploadsPath, draftH, "GET", "OPTIONS, POST, PUT", 204, "OPTIONS, POST, PUT", tusACAM, true},
	{"ietf_upload", uploadsPath + "/abc", draftH, "PUT", "OPTIONS, HEAD, GET, PATCH, DELETE", 204, "OPTIONS, HEAD, GET, PATCH, DELETE", tusACAM, true},
	{"asset", "/api/v1/assets/abc", nil, "POST", "GET, HEAD, OPTIONS", 204, "GET, HEAD, OPTIONS", "GET, HEAD, OPTIONS", true},
	{"quota", "/api/v1/quota", nil, "DELETE", "GET, HEAD, OPTIONS", 204, "GET, HEAD, OPTIONS", "GET, HEAD, OPTIONS", true},
	{"download", "/sign/assets/uploads/abc", nil, "PATCH", "GET, HEAD, OPTIONS", 204, "GET, HEAD, OPTIONS", "GET, HEAD, OPTIONS", true},
	// The webhook API is for servers: no CORS, OPTIONS is refused.
	{"webhooks", "/api/v1/webhooks", nil, "PUT", "GET, POST", 405, "GET, POST", "", false},
	{"webhook", "/api/v1/webhooks/abc", nil, "POST", "GET, DELETE", 405, "GET, DELETE", "", false},
	{"webhook_deliveries", "/api/v1/webhooks/abc/deliveries", nil, "DELETE", "GET", 405, "GET", "", false},
	{"direct_uploads", "/api/v1/direct-uploads", nil, "GET", "POST, OPTIONS", 204, "", "POST, OPTIONS", true},
	{"direct_upload", "/api/v1/direct-uploads/abc", nil, "GET", "DELETE, OPTIONS", 204, "", "DELETE, OPTIONS", true},
	// Discovery on a direct upload URL answers without a valid grant.
	{"direct_tus", "/api/v1/direct-uploads/abc/tus", tusH, "", "", 204, "", tusACAM, true},
	{"page", "/", nil, "POST", "GET, HEAD", 405, "GET, HEAD", "", false},
	{"healthz", "/healthz", nil, "", "", 200, "", "", false},
	{"metrics", "/metrics", nil, "", "", 200, "", "", false},
	// Paths below a resource that has none there.
	{"webhook_other", "/api/v1/webhooks/abc/other", nil, "", "", 404, "", "", false},
	{"direct_upload_other", "/api/v1/direct-uploads/abc/other", nil, "", "", 404, "", "", true},
	{"page_file", "/page/page.js", nil, "DELETE", "GET, HEAD", 405, "GET, HEAD", "", false},
	{"readyz", "/readyz", nil, "", "", 200, "", "", false},
}

// TestRouteMethods checks each route's 405, OPTIONS and preflight.
func TestRouteMethods(t *testing.T) {
	e := newEnv(t, nil, nil)
	for _, rc := range routeCases {
		t.Run(rc.name, func(t *testing.T) {
			if rc.bad != "" {
				h := hdr(append([]string{"Authorization", "Bearer " + e.keys["acme"]}, rc.h...)...)
				r := e.do(rc.bad, rc.path, h, nil)
				if r.status != http.StatusMethodNotAllowed || r.h.Get("Allow") != rc.allow {
					t.Errorf("%s: got %d Allow %q %s, want 405 Allow %q", rc.bad, r.status, r.h.Get("Allow"), r.body, rc.allow)
				}
			}
			h := hdr(append([]string{"Origin", "https://app.example", "Access-Control-Request-Method", "PATCH"}, rc.h...)...)
			r := e.do("OPTIONS", rc.path, h, nil)
			if r.status != rc.options {
				t.Errorf("OPTIONS: got %d, want %d", r.status, rc.options)
			}
			if rc.options != 405 && r.h.Get("Allow") != rc.optionsAllow {
				t.Errorf("OPTIONS: got Allow %q, want %q", r.h.Get("Allow"), rc.optionsAllow)
			}
			if got := r.h.Get("Access-Control-Allow-Methods"); got != rc.acam {
				t.Errorf("OPTIONS: got Access-Control-Allow-Methods %q, want %q", got, rc.acam)
			}
			if got, want := r.h.Get("Access-Control-Allow-Origin") != "", rc.cors; got != want {
				t.Errorf("OPTIONS: got Access-Control-Allow-Origin %q, want it: %v", r.h.Get("Access-Control-Allow-Origin"), want)
			}
		})
	}
}
