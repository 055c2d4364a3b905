package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// errBodyRead marks a failed read of the request body (client gone, idle
// timeout): the client is told nothing useful anymore, but what was durable
// before stays committed.
var errBodyRead = errors.New("proxy: reading request body failed")

// errSlowBody marks a body cut off for arriving slower than the minimum
// rate (Config.MinBodyRate): a client dripping bytes must not hold a
// connection, a lease and a buffer share for hours.
var errSlowBody = errors.New("proxy: request body slower than the minimum rate")

// bodyReader is a request body as the pipeline reads it. Before reads it
// pushes the connection's read deadline forward: an idle client is cut off
// after idle, while a slow but steady one may take as long as it needs
// (fasthttp's ReadTimeout would be one deadline for the whole body). It
// keeps the first network error so the handler can tell a client that
// vanished from a storage failure.
type bodyReader struct {
	r       io.Reader
	ctx     *fasthttp.RequestCtx
	idle    time.Duration
	lastSet time.Time
	n       int64
	eof     bool
	err     error
	m       *metrics
	// stop closes when Shutdown gave up waiting: the deadline is then no
	// longer pushed forward, so a stalled client releases the handler.
	stop <-chan struct{}
	rate bodyRate
	// taken is set (once) by cut: a newer request took the upload over,
	// and every read fails with it.
	taken atomic.Pointer[Error]
	// ahead is a byte atEOF read and Read has not returned yet.
	ahead    [1]byte
	hasAhead bool
}

// atEOF reports whether the body has ended, reading a byte ahead (kept for
// the next Read) when that is not known yet. A failed read is kept for
// the next Read too, and is not an end.
func (b *bodyReader) atEOF() bool {
	for !b.hasAhead && !b.eof && b.err == nil {
		n, _ := b.Read(b.ahead[:])
		b.hasAhead = n == 1
	}
	return b.ended()
}

// ended reports whether every byte of the body was read and returned.
func (b *bodyReader) ended() bool { return b.eof && !b.hasAhead }

// cut makes the body's pending and future reads fail with cause (a newer
// request took the upload over): the pipeline then stores and commits
// what it read, and the handler answers cause. It reports whether this
// call cut the body (false: it was cut already). Safe to call from any
// goroutine.
func (b *bodyReader) cut(cause *Error) bool {
	if !b.taken.CompareAndSwap(nil, cause) {
		return false
	}
	// A read blocked on a silent client returns now. Read checks taken
	// again after setting its deadline, so it cannot undo this.
	_ = b.ctx.SetReadDeadline(time.Now())
	return true
}

// bodyRate enforces a minimum throughput: in each window of read time, at
// least quota bytes must arrive. Only time spent waiting in Read counts,
// so a server that stops reading (an fsync, a wait for buffers) never
// makes its client look slow: what the client sent meanwhile waits in the
// socket and is read at once.
type bodyRate struct {
	quota  int64         // bytes due per window; 0: no minimum
	window time.Duration // read time per window
	spent  time.Duration // read time in the current window
	got    int64         // bytes in the current window
	// capped: the read deadline is the end of the window, not idle.
	capped bool
}

func (s *Server) newBodyReader(ctx *fasthttp.RequestCtx, rq *request) *bodyReader {
	r := ctx.RequestBodyStream()
	if r == nil {
		// No Content-Length and no chunked encoding: no body.
		r = eofReader{}
	}
	b := &bodyReader{r: r, ctx: ctx, idle: s.cfg.BodyIdleTimeout, m: s.metrics, stop: s.base.Done()}
	if s.cfg.MinBodyRate > 0 {
		b.rate = bodyRate{quota: int64(float64(s.cfg.MinBodyRate) * s.cfg.MinBodyRateWindow.Seconds()), window: s.cfg.MinBodyRateWindow}
	}
	rq.body = b
	return b
}

// trackBody registers b so that Shutdown can cut a stalled body off; the
// returned func unregisters it.
func (s *Server) trackBody(b *bodyReader) func() {
	s.bodiesMu.Lock()
	s.bodies[b] = struct{}{}
	s.bodiesMu.Unlock()
	return func() {
		s.bodiesMu.Lock()
		delete(s.bodies, b)
		s.bodiesMu.Unlock()
	}
}

// cutBodies makes every tracked body's pending read fail now. The handlers
// then commit what is durable and answer.
func (s *Server) cutBodies() {
	s.bodiesMu.Lock()
	defer s.bodiesMu.Unlock()
	for b := range s.bodies {
		_ = b.ctx.SetReadDeadline(time.Now())
	}
}

// deadlineEvery limits how often the deadline is moved (a timer update
// per read of a few KiB would be wasted work); the effective idle limit is
// thus between idle-1s and idle.
const deadlineEvery = time.Second

// Read implements io.Reader.
func (b *bodyReader) Read(p []byte) (int, error) {
	if b.hasAhead && len(p) > 0 {
		p[0], b.hasAhead = b.ahead[0], false
		return 1, nil
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.eof {
		return 0, io.EOF
	}
	start := b.armDeadline()
	if t := b.taken.Load(); t != nil {
		b.err = fmt.Errorf("%w: %w", errBodyRead, t)
		return 0, b.err
	}
	n, err := b.r.Read(p)
	if n > 0 {
		b.n += int64(n)
		b.m.bytesReceived.Add(int64(n))
	}
	if t := b.taken.Load(); t != nil && err != nil {
		// The read failed because cut set the deadline: that is the story.
		err = t
	} else if b.rate.quota > 0 {
		if slow := b.countRate(start, n, err); slow != nil {
			b.err = slow
			return n, b.err
		}
	}
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		b.err = fmt.Errorf("%w: %w", errBodyRead, err)
		return n, b.err
	}
	return n, err
}

// armDeadline moves the read deadline before a read (at once when a
// release request stopped the body) and returns the read's start.
func (b *bodyReader) armDeadline() time.Time {
	select {
	case <-b.stop:
		_ = b.ctx.SetReadDeadline(time.Now())
		b.lastSet = time.Now()
	default:
	}
	start := time.Now()
	r := &b.rate
	switch {
	case r.quota > 0 && r.got < r.quota && r.window-r.spent < b.idle:
		// The window's bytes are not in yet: this read may wait only
		// until the window ends. Set on every such read, but only slow
		// bodies (and the first bytes of a window) get here.
		_ = b.ctx.SetReadDeadline(start.Add(r.window - r.spent))
		b.lastSet, r.capped = start, true
	case r.capped || start.Sub(b.lastSet) >= deadlineEvery:
		// Errors here mean the connection is gone; the read reports it.
		_ = b.ctx.SetReadDeadline(start.Add(b.idle))
		b.lastSet, r.capped = start, false
	}
	return start
}

// countRate counts a read of n bytes begun at start against the minimum
// rate: at the end of a window (or when the window's deadline cut the
// read) a body short of the window's bytes is refused with the error
// returned.
func (b *bodyReader) countRate(start time.Time, n int, err error) error {
	r := &b.rate
	r.spent += time.Since(start)
	r.got += int64(n)
	if r.spent >= r.window || (err != nil && r.capped && errors.Is(err, os.ErrDeadlineExceeded)) {
		if r.got < r.quota {
			b.m.slowBodies.Add(1)
			return fmt.Errorf("%w: %w: %d bytes in %v, want %d", errBodyRead, errSlowBody, r.got, r.spent.Round(time.Millisecond), r.quota)
		}
		r.spent, r.got = 0, 0
	}
	return nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// drainLimit is how much of an unread body settleBody reads and drops to
// keep the connection usable; beyond it, the connection is closed.
const drainLimit = 4 << 20

// settleBody makes sure an unread or half-read body is never parsed as the
// next request: a small rest is drained; a larger one makes the reply close
// the connection, after a lingering drain (see lingerClose). It reports
// whether the caller must linger.
func (s *Server) settleBody(ctx *fasthttp.RequestCtx, rq *request) (linger bool) {
	b := rq.body
	if b != nil && b.eof {
		return false
	}
	if b != nil && b.err != nil {
		ctx.SetConnectionClose()
		return false
	}
	cl := int64(ctx.Request.Header.ContentLength())
	if cl == -2 || cl == 0 {
		return false
	}
	if b == nil {
		b = s.newBodyReader(ctx, rq)
	}
	if cl > 0 && cl-b.n > drainLimit {
		return true
	}
	b.idle = 5 * time.Second
	b.lastSet = time.Time{}
	b.rate = bodyRate{} // the drain is bounded by idle and drainLimit
	if _, err := io.CopyN(io.Discard, b, drainLimit+1); err != io.EOF {
		return true
	}
	return false
}

// Lingering close: how long and how much of a refused body is read and
// dropped after the reply, before the connection closes.
const (
	lingerTimeout = 5 * time.Second
	lingerLimit   = 80 << 20
)

// lingerClose sends the response with Connection: close itself and then
// reads and drops what the client still sends (bounded), before closing.
// Closing a socket with unread input makes the kernel send a TCP reset,
// which often destroys the reply before the client read it: a net/http
// client sees "connection reset" instead of the 409/423/503 (versitygw
// PR #2345; e2e/s3 TestEarlyRejectionIsDelivered).
func (s *Server) lingerClose(ctx *fasthttp.RequestCtx) {
	ctx.Response.SetConnectionClose()
	resp := fasthttp.AcquireResponse()
	ctx.Response.CopyTo(resp)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		// resp is owned by this goroutine from here on.
		defer fasthttp.ReleaseResponse(resp)
		_ = c.SetWriteDeadline(time.Now().Add(lingerTimeout))
		w := bufio.NewWriter(c)
		if resp.Write(w) != nil || w.Flush() != nil {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(lingerTimeout))
		_, _ = io.CopyN(io.Discard, c, lingerLimit)
	})
}
