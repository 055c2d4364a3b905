package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/roughy/ingest/internal/testsvc"
	"github.com/valyala/fasthttp"
)

// failingListener fails its first fails Accepts with EMFILE.
type failingListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestLimitListenerRetriesAcceptErrors: EMFILE from Accept is retried
// (fasthttp's Serve would return it and stop the server), logged once for
// a burst of failures within a second, and a Close during the backoff ends
// Accept with net.ErrClosed.
func TestLimitListenerRetriesAcceptErrors(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &failingListener{Listener: inner}
	fl.fails.Store(4) // backoff 5+10+20+40 ms, well within one log period
	var logs testsvc.LogBuffer
	l := newLimitListener(fl, slog.New(slog.NewTextHandler(&logs, nil)), 0, 0, nil, 0)
	defer l.Close()
	go func() {
		if c, err := net.Dial("tcp", inner.Addr().String()); err == nil {
			defer c.Close()
			time.Sleep(2 * time.Second)
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept after EMFILE: got %v, want a connection", err)
	}
	c.Close()
	if n := strings.Count(logs.Tail(1<<20), "accept failed"); n != 1 {
		t.Fatalf("4 failures within 100 ms logged %d times, want once:\n%s", n, logs.Tail(1<<20))
	}
	if !strings.Contains(logs.Tail(1<<20), "too many open files") {
		t.Fatalf("log does not name the error:\n%s", logs.Tail(1<<20))
	}

	fl.fails.Store(1 << 30)
	done := make(chan error, 1)
	go func() { _, err := l.Accept(); done <- err }()
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: got %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept still backing off 2s after Close")
	}
}

// refusedOrIdle reads rc for a moment: the refusal the server sent
// unasked, or a zero resp when the connection stayed open and silent.
func refusedOrIdle(t *testing.T, rc *rawConn) resp {
	t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	r, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			_ = rc.c.SetReadDeadline(time.Time{})
			return resp{}
		}
		t.Fatalf("read: %v", err)
	}
	defer r.Body.Close()
	var b bytes.Buffer
	// Best effort: the close that follows a refusal may cut its body; the
	// status and headers are what callers check.
	_, _ = b.ReadFrom(r.Body)
	return resp{status: r.StatusCode, h: r.Header, body: b.Bytes()}
}

// wantRefused checks a connection refusal: 503, the JSON error code,
// Tus-Resumable and Retry-After.
func wantRefused(t *testing.T, what string, r resp, code string) {
	t.Helper()
	if r.status != http.StatusServiceUnavailable || r.errorCode() != code ||
		r.h.Get("Tus-Resumable") != tusVersion || r.h.Get("Retry-After") == "" || r.h.Get("Content-Type") != "application/json" {
		t.Fatalf("%s: got %d %v %s, want 503 %s with Tus-Resumable, Retry-After and JSON", what, r.status, r.h, r.body, code)
	}
}

// TestConnectionCaps: connections over --max-conns-per-ip from one
// address, and over --max-conns in total, are refused with a JSON 503;
// a trusted proxy is not capped per IP; closed connections free slots.
func TestConnectionCaps(t *testing.T) {
	const proxyIP = "127.0.0.9"
	e := newEnv(t, func(c *Config) {
		c.MaxConns, c.MaxConnsPerIP = 6, 2
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix(proxyIP + "/32")}
	}, nil)
	open := func(src string, n int) []*rawConn {
		var out []*rawConn
		for range n {
			rc := e.rawFrom(src)
			if r := refusedOrIdle(t, rc); r.status != 0 {
				t.Fatalf("connection %d from %s: got %d %s, want it accepted", len(out)+1, src, r.status, r.body)
			}
			out = append(out, rc)
		}
		return out
	}
	client := open("127.0.0.2", 2)
	wantRefused(t, "third connection from one IP", refusedOrIdle(t, e.rawFrom("127.0.0.2")), "too_many_connections_from_client")
	open(proxyIP, 3) // 5 open
	open("127.0.0.3", 1)
	wantRefused(t, "seventh connection", refusedOrIdle(t, e.rawFrom("127.0.0.4")), "too_many_connections")
	for _, code := range []string{"too_many_connections_from_client", "too_many_connections"} {
		if got := testutil.ToFloat64(e.srv.metrics.refusedConns.WithLabelValues(code)); got != 1 {
			t.Errorf("roughy_connections_refused_total{code=%q}: got %v, want 1", code, got)
		}
	}

	// A closed connection frees its slots (fasthttp notices the close
	// after a moment).
	client[0].c.Close()
	waitFor(t, "healthz from 127.0.0.2 to answer 200", func() bool {
		rc := e.rawFrom("127.0.0.2")
		defer rc.c.Close()
		_, _ = rc.c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
		r, err := http.ReadResponse(rc.br, nil)
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	})
}

// TestForwardedClientCap: behind a trusted proxy, --max-conns-per-ip caps
// each X-Forwarded-For client's requests in flight; other clients and
// X-Forwarded-For from untrusted peers are not affected.
func TestForwardedClientCap(t *testing.T) {
	const proxyIP = "127.0.0.9"
	e := newEnv(t, func(c *Config) {
		c.MaxConnsPerIP = 1
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix(proxyIP + "/32")}
	}, nil)
	c := e.create("acme", 1<<20)
	// A PATCH in flight for client 1.2.3.4: headers and more than the
	// pre-read part of the body, the rest withheld.
	hold := e.rawFrom(proxyIP)
	hold.send("PATCH", c.Location[len(e.url):], e.tusHdr("acme", "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream",
		"Content-Length", "1048576", "X-Forwarded-For", "6.6.6.6, 1.2.3.4"), make([]byte, 32<<10))
	waitFor(t, "the PATCH to stream", func() bool { return e.srv.metrics.activeUploads.Load() == 1 })

	get := func(src, xff string) resp {
		rc := e.rawFrom(src)
		rc.send("GET", "/healthz", hdr("X-Forwarded-For", xff), nil)
		return rc.read("GET")
	}
	for _, xff := range []string{"1.2.3.4", "9.9.9.9, 1.2.3.4", "1.2.3.4, " + proxyIP} {
		wantRefused(t, "second request of 1.2.3.4 via "+xff, get(proxyIP, xff), "too_many_connections_from_client")
	}
	if r := get(proxyIP, "1.2.3.5"); r.status != http.StatusOK {
		t.Fatalf("another client through the proxy: got %d %s, want 200", r.status, r.body)
	}
	if r := get("127.0.0.2", "1.2.3.4"); r.status != http.StatusOK {
		t.Fatalf("X-Forwarded-For from an untrusted peer: got %d %s, want 200 (ignored)", r.status, r.body)
	}
	// Once the PATCH is over, 1.2.3.4 gets in again.
	hold.c.Close()
	waitFor(t, "the PATCH to end", func() bool { return e.srv.metrics.activeUploads.Load() == 0 })
	if r := get(proxyIP, "1.2.3.4"); r.status != http.StatusOK {
		t.Fatalf("1.2.3.4 after its PATCH ended: got %d %s, want 200", r.status, r.body)
	}
}

func TestForwardedClient(t *testing.T) {
	cl := clientLimiter{max: 1, trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	trusted := netip.MustParseAddr("10.1.2.3")
	for _, c := range []struct {
		peer netip.Addr
		xff  []string
		want string // "" = no client
	}{
		{netip.MustParseAddr("192.0.2.1"), []string{"1.2.3.4"}, ""},
		{trusted, nil, ""},
		{trusted, []string{"1.2.3.4"}, "1.2.3.4"},
		{trusted, []string{"6.6.6.6, 1.2.3.4"}, "1.2.3.4"},
		{trusted, []string{"1.2.3.4, 10.0.0.2"}, "1.2.3.4"},
		{trusted, []string{"6.6.6.6", "1.2.3.4"}, "1.2.3.4"},
		{trusted, []string{"garbage, 1.2.3.4"}, "1.2.3.4"},
		{trusted, []string{"1.2.3.4, garbage"}, ""},
		{trusted, []string{"10.0.0.2, 10.0.0.3"}, ""},
		{trusted, []string{"1.2.3.4:5678"}, "1.2.3.4"},
		{trusted, []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{trusted, []string{" ::ffff:1.2.3.4 "}, "1.2.3.4"},
	} {
		var xff [][]byte
		for _, v := range c.xff {
			xff = append(xff, []byte(v))
		}
		ip, ok := cl.client(c.peer, xff)
		got := ""
		if ok {
			got = ip.String()
		}
		if got != c.want {
			t.Errorf("client(%v, %q): got %q, want %q", c.peer, c.xff, got, c.want)
		}
	}
}

// TestParseErrorTimeout: a request head that never completes gets a JSON
// 408 with Tus-Resumable once the read timeout passes.
func TestParseErrorTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BodyIdleTimeout = 300 * time.Millisecond }, nil)
	rc := e.raw()
	rc.write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n"))
	r := rc.read("GET")
	if r.status != fasthttp.StatusRequestTimeout || r.errorCode() != "request_timeout" || r.h.Get("Tus-Resumable") != tusVersion {
		t.Fatalf("got %d %v %s, want 408 request_timeout with Tus-Resumable", r.status, r.h, r.body)
	}
}

// TestFasthttpLoggerWithholdsRequests: the errors fasthttp really makes of
// malformed requests are logged without the request's bytes, and
// credentials are redacted from whatever else it logs.
func TestFasthttpLoggerWithholdsRequests(t *testing.T) {
	const key = "rk_live_secretsecretsecretsecret0001"
	// Ends a request so that fasthttp's 200-byte tail snippet starts at
	// the key's 11th byte.
	tail := "\r\nContent-Length: z\r\n\r\n"
	tailFrom10 := "\r\nX-Tail: " + strings.Repeat("t", 200-(len(key)-10)-len(tail)-len("\r\nX-Tail: ")) + tail
	var logs testsvc.LogBuffer
	lg := fasthttpLogger{slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	for _, raw := range []string{
		"PATCH /x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + key + "\r\nContent-Length: -5\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + key + "\x01\r\n\r\n",
		"G(T /sign/x?token=" + key + " HTTP/1.1\r\nHost: h\r\n\r\n",
		// Longer than fasthttp's 400-byte snippet: the key lands in the
		// tail part, without its header name.
		"PATCH /x HTTP/1.1\r\nHost: h\r\nX-Pad: " + strings.Repeat("p", 600) + "\r\nAuthorization: Bearer " + key + tailFrom10,
	} {
		var h fasthttp.RequestHeader
		err := h.Read(bufio.NewReader(strings.NewReader(raw)))
		if err == nil {
			t.Fatalf("fasthttp parsed %q", raw)
		}
		lg.Printf("error when serving connection %q<->%q: %v", addr, addr, err)
	}
	lg.Printf("ctx %s - %s", "GET /sign/assets/uploads/a?token=abcdef&x=1", "Authorization: Bearer "+key)
	lg.Printf("bearer %s", key[8:])
	out := logs.Tail(1 << 20)
	for _, secret := range []string{key[8:], "abcdef", key[len(key)-12:]} {
		if strings.Contains(out, secret) {
			t.Fatalf("log holds %q:\n%s", secret, out)
		}
	}
	if n := strings.Count(out, "withheld"); n < 4 || !strings.Contains(out, "127.0.0.1:1") {
		t.Fatalf("log: got %d withheld quotes, want at least 4, and the addresses kept:\n%s", n, out)
	}
}
