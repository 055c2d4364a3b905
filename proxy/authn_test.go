package proxy

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestGrantPolicy: a direct upload URL's token signs in with the grant's
// policy, and the chain applies it: the grant's origins (not the
// server's) get the CORS headers, a method the grant does not take is a
// 405 with the grant's Allow, a creation is held to the grant's origin,
// type and size, and the upload's URL is the grant's. An API key route
// takes no direct upload token, in the query or as a bearer.
func TestGrantPolicy(t *testing.T) {
	const app, site = "https://app.example", "https://site.example"
	e := newEnv(t, func(c *Config) { c.CORSOrigins = []string{site} }, nil)
	r := e.do("POST", directPath, hdr("Authorization", "Bearer "+e.keys["acme"], "Content-Type", "application/json"),
		[]byte(`{"type":"video","max_size_bytes":10,"allowed_origins":["`+app+`"]}`))
	var d directJSON
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &d) != nil {
		t.Fatalf("mint: %d %s, want 201", r.status, r.body)
	}
	url := d.UploadURL
	cors := func(what string, r resp, origin string) {
		t.Helper()
		if got := r.h.Get("Access-Control-Allow-Origin"); got != origin {
			t.Errorf("%s: Access-Control-Allow-Origin %q, want %q", what, got, origin)
		}
		if r.h.Get("Vary") != "Origin" {
			t.Errorf("%s: Vary %q, want Origin", what, r.h.Get("Vary"))
		}
	}

	pre := e.do("OPTIONS", url, hdr("Origin", app, "Access-Control-Request-Method", "PATCH"), nil)
	if pre.status != http.StatusNoContent || pre.h.Get("Access-Control-Allow-Methods") == "" {
		t.Errorf("preflight from the grant's origin: %d, methods %q, want 204 with methods", pre.status, pre.h.Get("Access-Control-Allow-Methods"))
	}
	cors("preflight from the grant's origin", pre, app)
	cors("preflight from the server's origin", e.do("OPTIONS", url, hdr("Origin", site, "Access-Control-Request-Method", "PATCH"), nil), "")

	put := e.do("PUT", url, e.tusHdr("", "Origin", app), nil)
	if put.status != http.StatusMethodNotAllowed || put.h.Get("Allow") != "OPTIONS, POST, HEAD, PATCH, DELETE" {
		t.Errorf("PUT: %d Allow %q, want 405 with the grant's methods", put.status, put.h.Get("Allow"))
	}
	cors("PUT", put, app)

	for _, c := range []struct {
		name, origin, length, md, code string
		status                         int
	}{
		{"from the server's origin", site, "5", "", "origin_not_allowed", http.StatusForbidden},
		{"past max_size_bytes", app, "11", "", "upload_too_large", http.StatusRequestEntityTooLarge},
		{"of another type", app, "5", md("type", "audio"), "type_not_allowed", http.StatusForbidden},
	} {
		r := e.do("POST", url, e.tusHdr("", "Origin", c.origin, "Upload-Length", c.length, "Upload-Metadata", c.md), nil)
		if r.status != c.status || r.errorCode() != c.code {
			t.Errorf("POST %s: %d %s, want %d %s", c.name, r.status, r.body, c.status, c.code)
		}
	}

	data := []byte("0123456789")
	post := e.do("POST", url, e.tusHdr("", "Origin", app, "Upload-Length", "10"), nil)
	if post.status != http.StatusCreated || post.h.Get("Location") != url {
		t.Fatalf("POST: %d Location %q %s, want 201 at the grant's URL", post.status, post.h.Get("Location"), post.body)
	}
	cors("POST", post, app)
	if r := e.patch("", url, 0, data, "Origin", app); r.status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s, want 204", r.status, r.body)
	}

	base, token, _ := strings.Cut(url, "?token=")
	for name, r := range map[string]resp{
		"asset with the token in the query":  e.do("GET", assetsPath+d.ID+"?token="+token, nil, nil),
		"asset with the token as a bearer":   e.do("GET", assetsPath+d.ID, hdr("Authorization", "Bearer "+token), nil),
		"upload with the token in the query": e.head("", uploadsPath+"/"+d.ID+"?token="+token),
		"quota with the token as a bearer":   e.do("GET", quotaPath, hdr("Authorization", "Bearer "+token), nil),
	} {
		if r.status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", name, r.status, r.body)
		}
	}
	if r := e.do("GET", base+"?token="+token, nil, nil); r.status != http.StatusOK {
		t.Errorf("GET of the grant's URL: %d %s, want 200", r.status, r.body)
	}
	e.wantReady("acme", d.ID, data)
}
