package testsvc

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The IETF resumable-upload draft's tests (e2e, e2e/fleet) speak HTTP/1.1
// by hand, so that they read the 104 interim responses from the socket as
// a client sees them (net/http's client hides them).

// DraftConn is one client connection that writes requests by hand and
// reads every response, interim ones included.
type DraftConn struct {
	t    testing.TB
	Conn net.Conn
	br   *bufio.Reader
	host string
}

// DialURL parses loc and dials its host; the connection is closed when
// the test ends.
func DialURL(t testing.TB, loc string) (*url.URL, net.Conn) {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", u.Host, err)
	}
	t.Cleanup(func() { conn.Close() })
	return u, conn
}

// DialDraft opens a connection to the server of base.
func DialDraft(t testing.TB, base string) *DraftConn {
	t.Helper()
	u, conn := DialURL(t, base)
	return &DraftConn{t: t, Conn: conn, br: bufio.NewReader(conn), host: u.Host}
}

// Hdr is an ordered header list ("Name: value" lines as pairs).
type Hdr [][2]string

// Start writes a request's head; a Content-Length in h announces the body
// the caller writes with Body (or not).
func (c *DraftConn) Start(method, target string, h Hdr) {
	c.t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		c.t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, u.RequestURI(), c.host)
	for _, kv := range h {
		fmt.Fprintf(&b, "%s: %s\r\n", kv[0], kv[1])
	}
	b.WriteString("\r\n")
	c.Body([]byte(b.String()))
}

// Body writes p, a request's body or part of one, on the connection; a
// failed write fails the test.
func (c *DraftConn) Body(p []byte) {
	c.t.Helper()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Conn.Write(p); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// DraftReply is one response read from the socket, interim or final.
type DraftReply struct {
	Status int
	Header http.Header
	Body   []byte
}

// Next reads the next response (a 1xx too) of a request with method.
func (c *DraftConn) Next(method string) DraftReply {
	c.t.Helper()
	_ = c.Conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("read response to %s: %v", method, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("read body: %v", err)
	}
	return DraftReply{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// Final reads responses up to the final one; it returns the 1xx read on
// the way and the final response.
func (c *DraftConn) Final(method string) ([]DraftReply, DraftReply) {
	c.t.Helper()
	var interim []DraftReply
	for {
		r := c.Next(method)
		if r.Status >= 200 {
			return interim, r
		}
		interim = append(interim, r)
	}
}

// DraftRoundTrip sends one whole request on a new connection and returns its
// interim and final responses.
func DraftRoundTrip(t testing.TB, method, target string, h Hdr, body []byte) ([]DraftReply, DraftReply) {
	t.Helper()
	c := DialDraft(t, target)
	if body != nil {
		h = append(h, [2]string{"Content-Length", fmt.Sprint(len(body))})
	}
	c.Start(method, target, h)
	c.Body(body)
	return c.Final(method)
}
