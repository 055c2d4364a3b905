package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// lowFDLimit runs the binary with a soft descriptor limit of soft and a
// hard one of hard (the server raises soft to hard itself).
func lowFDLimit(soft, hard int) serverOpt {
	return withWrap("sh", "-c", fmt.Sprintf(`ulimit -Sn %d && ulimit -Hn %d && exec "$0" "$@"`, soft, hard))
}

// hostOf is the host:port of a server URL.
func hostOf(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Host
}

// dialIdle opens n TCP connections to addr from the loopback address src
// and sends nothing on them; they are closed at cleanup.
func dialIdle(t *testing.T, addr, src string, n int) []net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %s from %s after %d connections: %v", addr, src, len(conns), err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() { closeAll(conns) })
	return conns
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// refusals reads every connection until wait has passed: it returns the
// responses the server sent unasked (a refused connection), and how many
// connections stayed silent (accepted and idle).
func refusals(conns []net.Conn, wait time.Duration) (refused []reply, idle int) {
	deadline := time.Now().Add(wait)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(deadline)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					idle++
				}
				return
			}
			body, _ := io.ReadAll(resp.Body)
			refused = append(refused, reply{Status: resp.StatusCode, Header: resp.Header, Body: body})
		})
	}
	wg.Wait()
	return refused, idle
}

// wantJSONError checks that rep is a JSON error with status and code and
// the headers every error carries.
func wantJSONError(t *testing.T, what string, rep reply, status int, code string) {
	t.Helper()
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(rep.Body, &body); err != nil {
		t.Fatalf("%s: body %q is not JSON: %v", what, rep.Body, err)
	}
	if rep.Status != status || body.Error.Code != code || body.Error.Message == "" {
		t.Fatalf("%s: got %d %s, want %d with code %q and a message", what, rep.Status, rep.Body, status, code)
	}
	if ct := rep.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: Content-Type got %q, want application/json", what, ct)
	}
	if v := rep.Header.Get("Tus-Resumable"); v != "1.0.0" {
		t.Fatalf("%s: Tus-Resumable got %q, want 1.0.0", what, v)
	}
}

// uploadSmall runs a whole TUS upload (create, PATCH, HEAD) and checks it.
func uploadSmall(t *testing.T, s *server) {
	t.Helper()
	data := randomBytes(256 << 10)
	c := createUpload(t, s, acmeKey, int64(len(data)))
	if rep := patch(t, c.Location, acmeKey, 0, data); rep.Status != http.StatusNoContent {
		t.Fatalf("PATCH: got %d %s, want 204", rep.Status, rep.Body)
	}
	if off := headOffset(t, c.Location, acmeKey); off != int64(len(data)) {
		t.Fatalf("HEAD offset: got %d, want %d", off, len(data))
	}
	wantReady(t, s, acmeKey, c.AssetID, data)
}

// TestFDExhaustionKeepsServing: More idle connections
// than the descriptor limit must not stop the server; with the default
// caps (derived from the hard limit) the excess is refused with a JSON 503
// before descriptors run out; with the caps lifted, Accept fails with
// EMFILE and the server waits; either way it serves an upload once the
// connections are gone.
func TestFDExhaustionKeepsServing(t *testing.T) {
	const soft, hard = 64, 256

	t.Run("default caps", func(t *testing.T) {
		s := startServer(t, lowFDLimit(soft, hard))
		// Half the raised limit in total, a quarter of that per IP.
		line := regexp.MustCompile(`fd_limit=(\d+) max_conns=(\d+) max_conns_per_ip=(\d+)`).FindStringSubmatch(s.log.tail(1 << 20))
		if line == nil || line[1] != "256" || line[2] != "128" || line[3] != "32" {
			t.Fatalf("serving line: got %q, want fd_limit=256 max_conns=128 max_conns_per_ip=32", line)
		}
		// From an address of its own, so the harness's connections do
		// not count.
		conns := dialIdle(t, hostOf(t, s.URL), "127.0.0.2", hard+44)
		refused, idle := refusals(conns, 3*time.Second)
		if idle != 32 || len(refused) != len(conns)-32 {
			t.Fatalf("got %d idle and %d refused connections, want 32 idle and %d refused", idle, len(refused), len(conns)-32)
		}
		wantJSONError(t, "connection over the per-IP cap", refused[0], http.StatusServiceUnavailable, "too_many_connections_from_client")
		if ra := refused[0].Header.Get("Retry-After"); ra == "" {
			t.Fatalf("refusal has no Retry-After: %v", refused[0].Header)
		}
		// Other addresses still get in while 127.0.0.2 is at its cap.
		uploadSmall(t, s)
		closeAll(conns)
		uploadSmall(t, s)
	})

	t.Run("caps above the limit", func(t *testing.T) {
		// Through the environment twins of --max-conns and
		// --max-conns-per-ip.
		s := startServer(t, lowFDLimit(soft, hard), withEnv("ROUGHY_MAX_CONNS=100000", "ROUGHY_MAX_CONNS_PER_IP=100000"))
		conns := dialIdle(t, hostOf(t, s.URL), "127.0.0.2", hard+100)
		// Accept keeps failing with EMFILE for a while.
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(s.log.tail(1<<20), "accept failed") {
			if time.Now().After(deadline) {
				t.Fatalf("no accept failure logged with %d connections over a limit of %d", len(conns), hard)
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(2500 * time.Millisecond)
		log := s.log.tail(1 << 20)
		if strings.Contains(log, "roughy stopped") {
			t.Fatalf("the server stopped on EMFILE:\n%s", s.log.tail(2000))
		}
		// At most one accept failure a second is logged.
		if n := strings.Count(log, "accept failed"); n > 5 {
			t.Fatalf("accept failures logged %d times in about 3 s, want at most one a second", n)
		}
		closeAll(conns)
		uploadSmall(t, s)
	})
}

// rawExchange writes raw on a new connection and reads one response.
func rawExchange(t *testing.T, addr string, raw []byte) reply {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response to %.60q: %v", raw, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// TestParseErrorsAreJSONAndLogNoSecrets: Requests
// fasthttp cannot parse get the JSON error with Tus-Resumable (400, or
// 431 past the 64 KiB header limit), and the debug log of their parse
// errors holds neither the API key nor a download token.
func TestParseErrorsAreJSONAndLogNoSecrets(t *testing.T) {
	s := startServer(t, withArgs("--log-level", "debug"))
	addr := hostOf(t, s.URL)
	const token = "dltoken0123456789abcdef0123456789"
	auth := "Authorization: Bearer " + acmeKey + "\r\n"
	cases := []struct {
		name   string
		raw    string
		status int
		code   string
	}{
		{"negative Content-Length", "PATCH " + tusPath + "/x HTTP/1.1\r\nHost: h\r\n" + auth +
			"Tus-Resumable: 1.0.0\r\nContent-Length: -5\r\n\r\n", 400, "malformed_request"},
		{"bad HTTP version", "GET /sign/assets/uploads/a?token=" + token + " HTTX/1.1\r\nHost: h\r\n" + auth + "\r\n", 400, "malformed_request"},
		{"bad method", "G(T /sign/assets/uploads/a?token=" + token + " HTTP/1.1\r\nHost: h\r\n" + auth + "\r\n", 400, "malformed_request"},
		{"control byte in the key", "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer " + acmeKey + "\x01\r\n\r\n", 400, "malformed_request"},
		{"no Host", "HEAD " + tusPath + "/x?token=" + token + " HTTP/1.1\r\n" + auth + "Content-Length: x\r\n\r\n", 400, "malformed_request"},
		{"headers over 64 KiB", "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: " + strings.Repeat("p", 70<<10) + "\r\n" + auth + "\r\n", 431, "headers_too_large"},
	}
	for _, c := range cases {
		rep := rawExchange(t, addr, []byte(c.raw))
		wantJSONError(t, c.name, rep, c.status, c.code)
	}
	// Give the log a moment: fasthttp logs after the response.
	time.Sleep(200 * time.Millisecond)
	log := s.log.tail(1 << 22)
	if !strings.Contains(log, "cannot parse content-length") {
		t.Fatalf("the debug log has no fasthttp parse error, so it proves nothing:\n%s", s.log.tail(4000))
	}
	for _, secret := range []string{acmeKey, acmeKey[len("rk_live_"):][:16], token} {
		if i := strings.Index(log, secret); i >= 0 {
			t.Fatalf("the debug log holds the secret %q: …%s…", secret, log[max(0, i-200):min(len(log), i+100)])
		}
	}
	if bytes.Contains([]byte(log), []byte("Bearer rk_")) {
		t.Fatalf("the debug log holds a bearer key")
	}
}
