package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// serveHealthz serves /healthz: the process is up.
func (*Server) serveHealthz(_ context.Context, rc *fasthttp.RequestCtx, _ *request, _ *params) error {
	rc.SetContentType("text/plain; charset=utf-8")
	rc.SetBodyString("ok\n")
	return nil
}

// metricsRoute serves /metrics on the API listener.
func (s *Server) metricsRoute(_ context.Context, rc *fasthttp.RequestCtx, rq *request, _ *params) error {
	s.writeMetrics(rc, rq)
	return nil
}

// errStoreDataLost is readyz's answer on the check that found the session
// store emptied (sessionstore.ErrDataLost).
var errStoreDataLost = codeStoreDataLost.err()

// serveReady checks the session store and the storage, and that the storage
// has at least --min-free-space free.
func (s *Server) serveReady(_ context.Context, ctx *fasthttp.RequestCtx, _ *request, _ *params) error {
	rctx, cancel := context.WithTimeout(s.base, 5*time.Second)
	defer cancel()
	if err := s.store.Ping(rctx); errors.Is(err, sessionstore.ErrDataLost) {
		// Reported on this check only: the node puts back what it owns
		// and serves on (static keys never depended on the store).
		seedErr := s.SeedStaticKeys(rctx)
		return fmt.Errorf("proxy: readyz: %w: %w (re-seeding static keys: %v)", errStoreDataLost, err, seedErr)
	} else if err != nil {
		return fmt.Errorf("proxy: readyz: session store: %w: %w", errUnavailable, err)
	}
	if err := s.pipe.Sink().Ping(rctx); err != nil {
		return fmt.Errorf("proxy: readyz: storage: %w: %w", errUnavailable, err)
	}
	if err := s.checkFreeSpace(); err != nil {
		return fmt.Errorf("proxy: readyz: %w", err)
	}
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString("ready\n")
	return nil
}
