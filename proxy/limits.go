package proxy

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// Accept retry: the first wait after a failed Accept, the longest one, and
// how often a failure is logged at most (a process out of file
// descriptors must keep serving, and must not flood its log either).
const (
	acceptRetryFloor = 5 * time.Millisecond
	acceptRetryMax   = time.Second
	acceptLogPeriod  = time.Second
)

// Connection refusals, answered by the listener itself before fasthttp
// sees the connection. Both are 503 with Retry-After rather than 429:
// tus-js-client forgets an upload on any 4xx to its resume HEAD, and a full server is a transient condition.
var (
	errServerFull = codeTooManyConnections.err()
	errClientFull = codeTooManyConnectionsFromClient.err()
)

// limitListener is the server's listener: Accept never fails but for a
// closed listener (fasthttp's Serve returns, and `roughy serve` stops, on
// any other Accept error: EMFILE was enough to stop the server),
// and it caps open connections in total and per client IP. Peers in
// trusted are exempt from the per-IP cap: a load balancer holds the
// connections of many clients (handle caps those by X-Forwarded-For).
//
// fasthttp's own MaxConnsPerIP is not used because it cannot exempt
// trusted proxies, and its refusals are plain text; its Concurrency stays
// as a backstop (see New).
type limitListener struct {
	net.Listener
	log       *slog.Logger
	maxConns  int // 0: no cap
	perIP     int // 0: no cap
	trusted   []netip.Prefix
	keepAlive time.Duration // 0: leave the listener's default
	// refused, when set, counts refusals by error code (/metrics).
	refused *prometheus.CounterVec
	// tls, when set, is the server's TLS: refusals are answered over it,
	// from goroutines of their own (a handshake waits on the client).
	tls *tls.Config
	// refusing bounds those goroutines; past it a refusal is a bare close.
	refusing chan struct{}

	closed    chan struct{}
	closeOnce sync.Once

	mu    sync.Mutex
	total int
	byIP  map[netip.Addr]int

	// Only Accept's goroutine (fasthttp runs one) touches these.
	lastLog    time.Time
	suppressed int
}

func newLimitListener(ln net.Listener, log *slog.Logger, maxConns, perIP int, trusted []netip.Prefix, keepAlive time.Duration) *limitListener {
	return &limitListener{
		Listener: ln, log: log, maxConns: maxConns, perIP: perIP, trusted: trusted, keepAlive: keepAlive,
		closed: make(chan struct{}), byIP: map[netip.Addr]int{}, refusing: make(chan struct{}, maxTLSRefusals),
	}
}

// Accept returns the next admitted connection. Accept errors are retried
// with a backoff from acceptRetryFloor to acceptRetryMax; connections over a
// cap get their 503 and are closed here.
func (l *limitListener) Accept() (net.Conn, error) {
	var wait time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			wait = min(max(2*wait, acceptRetryFloor), acceptRetryMax)
			l.acceptFailed(err, wait)
			select {
			case <-time.After(wait):
				continue
			case <-l.closed:
				return nil, net.ErrClosed
			}
		}
		wait = 0
		if c = l.admit(c); c != nil {
			return c, nil
		}
	}
}

// acceptFailed logs an Accept error, at most once per acceptLogPeriod.
func (l *limitListener) acceptFailed(err error, wait time.Duration) {
	now := time.Now()
	if now.Sub(l.lastLog) < acceptLogPeriod {
		l.suppressed++
		return
	}
	l.log.Warn("proxy: accept failed, retrying", "err", err, "retry_in", wait, "suppressed", l.suppressed)
	l.lastLog, l.suppressed = now, 0
}

// Close closes the listener and ends a pending Accept's backoff.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// admit counts c in, or answers it with a 503 and closes it (nil).
func (l *limitListener) admit(c net.Conn) net.Conn {
	if tc, ok := c.(*net.TCPConn); ok && l.keepAlive > 0 {
		// Detects peers that vanished without a FIN. fasthttp's own
		// TCPKeepalive would end Serve on a failure here.
		if err := errors.Join(tc.SetKeepAlive(true), tc.SetKeepAlivePeriod(l.keepAlive)); err != nil {
			l.log.Debug("proxy: keep-alive on a new connection", "err", err)
			c.Close()
			return nil
		}
	}
	ip := peerAddr(c.RemoteAddr())
	capped := l.perIP > 0 && ip.IsValid() && !inPrefixes(l.trusted, ip)
	l.mu.Lock()
	var refuse *Error
	switch {
	case l.maxConns > 0 && l.total >= l.maxConns:
		refuse = errServerFull
	case capped && l.byIP[ip] >= l.perIP:
		refuse = errClientFull
	default:
		l.total++
		if capped {
			l.byIP[ip]++
		}
	}
	l.mu.Unlock()
	if refuse != nil {
		if l.refused != nil {
			l.refused.WithLabelValues(refuse.Code).Inc()
		}
		if l.tls == nil {
			refuseConn(c, refuse)
			return nil
		}
		select {
		case l.refusing <- struct{}{}:
			go func() {
				defer func() { <-l.refusing }()
				refuseTLS(c, l.tls, refuse)
			}()
		default:
			c.Close()
		}
		return nil
	}
	return &limitConn{Conn: c, l: l, ip: ip, capped: capped}
}

// release gives back a closed connection's slots.
func (l *limitListener) release(ip netip.Addr, capped bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if capped {
		if l.byIP[ip]--; l.byIP[ip] <= 0 {
			delete(l.byIP, ip)
		}
	}
}

// refusalWriteTimeout bounds the write of a refusal; it goes into an
// empty socket buffer, so it never waits in practice, but the accept loop
// must not hang on a peer that does not read.
const refusalWriteTimeout = 100 * time.Millisecond

// refuseConn writes e as a complete JSON response on a connection that
// fasthttp never saw, and closes it.
func refuseConn(c net.Conn, e *Error) {
	_ = c.SetWriteDeadline(time.Now().Add(refusalWriteTimeout))
	_, _ = c.Write(rawErrorResponse(e))
	_ = c.Close()
}

// maxTLSRefusals bounds the TLS refusals under way at once, and
// tlsRefusalTimeout the time one may take, handshake included.
const (
	maxTLSRefusals    = 64
	tlsRefusalTimeout = 2 * time.Second
)

// refuseTLS is refuseConn for a TLS listener: a plain-text answer would
// reach the client as a handshake failure, not as the 503 to retry on.
func refuseTLS(c net.Conn, cfg *tls.Config, e *Error) {
	tc := tls.Server(c, cfg)
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(tlsRefusalTimeout))
	if tc.Handshake() != nil {
		return
	}
	_, _ = tc.Write(rawErrorResponse(e))
}

// rawErrorResponse is e as a whole HTTP/1.1 response with the headers every
// error carries: JSON body, Tus-Resumable, Retry-After on a 503.
func rawErrorResponse(e *Error) []byte {
	var body errorBody
	body.Error.Code, body.Error.Message = e.Code, e.Message
	js, _ := json.Marshal(&body) // a plain struct of strings
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", e.Status, http.StatusText(e.Status))
	b.WriteString("Content-Type: application/json\r\nTus-Resumable: " + tusVersion + "\r\n")
	if e.Status == fasthttp.StatusServiceUnavailable {
		b.WriteString("Retry-After: " + retryAfterSeconds + "\r\n")
	}
	fmt.Fprintf(&b, "Connection: close\r\nContent-Length: %d\r\n\r\n", len(js))
	b.Write(js)
	return b.Bytes()
}

// limitConn gives its slots back once, when it is closed.
type limitConn struct {
	net.Conn
	l      *limitListener
	ip     netip.Addr
	capped bool
	closed atomic.Bool
}

// Close closes the connection, then frees its slots: the descriptor is
// gone before another connection may take its place.
func (c *limitConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c.ip, c.capped)
	}
	return err
}

// peerAddr is the IP of a TCP address (invalid for other kinds).
func peerAddr(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	return ta.AddrPort().Addr().Unmap()
}

func inPrefixes(ps []netip.Prefix, ip netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// clientLimiter caps the in-flight requests of each client that reaches
// the server through a trusted proxy: the listener cannot tell those
// clients apart, since they share the proxy's connections.
type clientLimiter struct {
	max     int // 0: no cap
	trusted []netip.Prefix

	mu sync.Mutex
	n  map[netip.Addr]int
}

// client is the address a trusted proxy forwards for: the right-most
// X-Forwarded-For entry that is not itself a trusted proxy (entries to its
// left are the client's to write, so they are not believed). ok is false
// when peer is not a trusted proxy, or the header names no client, or an
// entry does not parse: then only the connection caps apply.
func (c *clientLimiter) client(peer netip.Addr, xff [][]byte) (netip.Addr, bool) {
	if c.max <= 0 || !peer.IsValid() || !inPrefixes(c.trusted, peer) {
		return netip.Addr{}, false
	}
	for i := len(xff) - 1; i >= 0; i-- {
		entries := bytes.Split(xff[i], []byte(","))
		for j := len(entries) - 1; j >= 0; j-- {
			ip, ok := parseForwarded(string(bytes.TrimSpace(entries[j])))
			if !ok {
				return netip.Addr{}, false
			}
			if !inPrefixes(c.trusted, ip) {
				return ip, true
			}
		}
	}
	return netip.Addr{}, false
}

// parseForwarded parses an X-Forwarded-For entry: an IP, or an IP with a
// port (some proxies add it).
func parseForwarded(s string) (netip.Addr, bool) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// acquire takes one of ip's request slots; false when all are taken.
func (c *clientLimiter) acquire(ip netip.Addr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[ip] >= c.max {
		return false
	}
	c.n[ip]++
	return true
}

// release gives back a slot acquire took.
func (c *clientLimiter) release(ip netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[ip]--; c.n[ip] <= 0 {
		delete(c.n, ip)
	}
}
