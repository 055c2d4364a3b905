package proxy

import (
	"errors"
	"fmt"
	"sync"

	"github.com/valyala/fasthttp"
)

// accountStreams counts, per account, the upload bodies this node is
// streaming, so that one account cannot take every connection and buffer
// of the node. Each body holds a share of --max-buffer-memory
// while it streams: without a cap, one account's stalled PATCHes would
// make every other account's wait for buffers.
type accountStreams struct {
	max int // 0: no cap

	mu sync.Mutex
	n  map[string]int
}

// acquire counts a body of account; ok is false when the account is at
// the cap. release must be called once for every successful acquire.
func (a *accountStreams) acquire(account string) (release func(), ok bool) {
	if a.max <= 0 {
		return func() {}, true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n[account] >= a.max {
		return nil, false
	}
	a.n[account]++
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.n[account]--; a.n[account] <= 0 {
			delete(a.n, account)
		}
	}, true
}

// hasBody reports whether a request carries a body to stream: a
// Content-Length above 0, or chunked encoding.
func hasBody(ctx *fasthttp.RequestCtx) bool {
	cl := ctx.Request.Header.ContentLength()
	return cl > 0 || cl == -1
}

// FreeSpacer is implemented by sinks that can tell their free space
// (pipeline.LocalSink): /readyz compares it with Config.MinFreeSpace.
type FreeSpacer interface {
	FreeSpace() (int64, error)
}

// errLowSpace is /readyz below the free-space floor: a balancer should
// send new uploads to another node before this one is full.
var errLowSpace = codeStorageLow.err()

// checkFreeSpace fails when the sink's free space is below the floor.
func (s *Server) checkFreeSpace() error {
	fs, ok := s.pipe.Sink().(FreeSpacer)
	if s.cfg.MinFreeSpace <= 0 || !ok {
		return nil
	}
	free, err := fs.FreeSpace()
	if errors.Is(err, errors.ErrUnsupported) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("proxy: free space: %w", err)
	}
	if free < s.cfg.MinFreeSpace {
		return fmt.Errorf("%w: %d bytes free, floor %d", errLowSpace, free, s.cfg.MinFreeSpace)
	}
	return nil
}
