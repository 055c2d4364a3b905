package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// serveHealthz serves /healthz: the process is up.
func serveHealthz(rc *fasthttp.RequestCtx, _ *request, _ *params) error {
	rc.SetContentType("text/plain; charset=utf-8")
	rc.SetBodyString("ok\n")
	return nil
}

// errStoreDataLost is readyz's answer on the check that found the session
// store emptied (sessionstore.ErrDataLost).
var errStoreDataLost = codeStoreDataLost.err()

// readiness serves /readyz.
type readiness struct {
	store interface {
		Ping(ctx context.Context) error
	}
	pipe *pipeline.Pipeline
	keys *keyAuth
	// base is the server's base context: a check outlives no shutdown.
	base context.Context
	// freeSpace fails below --min-free-space.
	freeSpace func() error
}

// serve checks the session store and the storage, and that the storage
// has at least --min-free-space free.
func (r *readiness) serve(_ context.Context, ctx *fasthttp.RequestCtx, _ *request, _ *params) error {
	rctx, cancel := context.WithTimeout(r.base, 5*time.Second)
	defer cancel()
	if err := r.store.Ping(rctx); errors.Is(err, sessionstore.ErrDataLost) {
		// Reported on this check only: the node puts back what it owns
		// and serves on (static keys never depended on the store).
		seedErr := r.keys.seed(rctx)
		return fmt.Errorf("proxy: readyz: %w: %w (re-seeding static keys: %v)", errStoreDataLost, err, seedErr)
	} else if err != nil {
		return fmt.Errorf("proxy: readyz: session store: %w: %w", errUnavailable, err)
	}
	if err := r.pipe.Sink().Ping(rctx); err != nil {
		return fmt.Errorf("proxy: readyz: storage: %w: %w", errUnavailable, err)
	}
	if err := r.freeSpace(); err != nil {
		return fmt.Errorf("proxy: readyz: %w", err)
	}
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString("ready\n")
	return nil
}
