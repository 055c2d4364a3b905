// Package proxy is Roughy's HTTP front end on fasthttp: the TUS 1.0.0
// endpoint, API-key auth, the assets API, signed downloads, CORS, health
// and metrics. fasthttp appears only in this package.
package proxy

import (
	"log/slog"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
)

// Config is the proxy's part of `roughy serve`'s flags.
type Config struct {
	// PublicURL is the base URL for Location and download_url ("" = from
	// the request: X-Forwarded-Proto/Host, else Host).
	PublicURL string
	// UploadExpiry is how long an upload may sit idle before it expires.
	UploadExpiry time.Duration
	// CORSOrigins are the allowed browser origins ("*" = any).
	CORSOrigins []string
	// SigningKey signs local download URLs (HMAC-SHA256).
	SigningKey []byte
	// DownloadTTL is how long a download_url stays valid.
	DownloadTTL time.Duration
	// LeaseTTL is how long a PATCH's lease lives without renewal.
	LeaseTTL time.Duration
	Logger   *slog.Logger
}

// Server serves the HTTP API.
type Server struct {
	cfg   Config
	store sessionstore.Store
	pipe  *pipeline.Pipeline
}

// New returns a server over store and pipe.
func New(cfg Config, store sessionstore.Store, pipe *pipeline.Pipeline) *Server {
	return &Server{cfg: cfg, store: store, pipe: pipe}
}

// The proxy helper implements, in other files of this package:
//
//	func (s *Server) Serve(ln net.Listener) error          // blocks until Shutdown
//	func (s *Server) Shutdown(ctx context.Context) error   // stop accepting, drain in-flight PATCHes
//	func (s *Server) RunJanitor(ctx context.Context, every time.Duration) // expire abandoned uploads until ctx ends
