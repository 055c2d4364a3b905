package proxy

import (
	"embed"
	"io/fs"
	"path"

	"github.com/valyala/fasthttp"
)

// pageFiles is the upload page of GET /: our own HTML, CSS
// and JS, no build step. tus-js-client's browser bundle is vendored at
// build time: scripts/setup-deps.sh copies it from e2e/js/node_modules
// (the pinned 4.3.1) into proxy/page/vendor/ (not in git), and go:embed
// takes whatever is there when the binary is built. A binary built
// without it serves the page, which then says what is missing.
//
//go:embed page
var pageFiles embed.FS

// pageCSP keeps the page to its own scripts and styles; it may talk to
// any origin, since a direct upload URL may name another host.
const pageCSP = "default-src 'self'; connect-src *; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// servePage serves GET / and /page/{file}.
func servePage(rc *fasthttp.RequestCtx, rq *request, p *params) error {
	name := p.id
	if string(rc.Path()) == "/" {
		name = "index.html"
	}
	if name == "tus.min.js" {
		name = "vendor/tus.min.js"
	}
	body, err := fs.ReadFile(pageFiles, path.Join("page", path.Clean("/" + name)[1:]))
	if err != nil || name == "" {
		return errNoEndpoint
	}
	h := &rc.Response.Header
	switch path.Ext(name) {
	case ".html":
		h.SetContentType("text/html; charset=utf-8")
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("Cache-Control", "no-cache")
	case ".js":
		h.SetContentType("text/javascript; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
	case ".css":
		h.SetContentType("text/css; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
	default:
		h.SetContentType("text/plain; charset=utf-8")
	}
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if rq.method == fasthttp.MethodHead {
		h.SetContentLength(len(body))
		return nil
	}
	rc.SetBody(body)
	return nil
}
