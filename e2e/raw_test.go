package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// rawPatch is a PATCH written by hand on its own TCP connection, so a test
// can send the headers, stream the body at its own pace, stop in the
// middle, or announce a body it never sends.
type rawPatch struct {
	conn net.Conn
	br   *bufio.Reader
	sent int64
}

// openRawPatch dials the server of loc and writes a PATCH's headers
// (Content-Length: length) plus any extra headers.
func openRawPatch(t *testing.T, loc, key string, offset, length int64, extra map[string]string) *rawPatch {
	t.Helper()
	return openRaw(t, "PATCH", loc, key, offset, length, extra)
}

// openRaw is openRawPatch for any method (a POST with data, say).
func openRaw(t *testing.T, method, loc, key string, offset, length int64, extra map[string]string) *rawPatch {
	t.Helper()
	u, conn := testsvc.DialURL(t, loc)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, u.RequestURI(), u.Host)
	fmt.Fprintf(&b, "Authorization: Bearer %s\r\nTus-Resumable: 1.0.0\r\n", key)
	if method == "PATCH" {
		fmt.Fprintf(&b, "Upload-Offset: %d\r\n", offset)
	}
	b.WriteString("Content-Type: application/offset+octet-stream\r\n")
	fmt.Fprintf(&b, "Content-Length: %d\r\n", length)
	for k, v := range extra {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatalf("write headers: %v", err)
	}
	return &rawPatch{conn: conn, br: bufio.NewReader(conn)}
}

// Write sends body bytes; it reports the error instead of failing, since a
// server may close the connection on purpose.
func (p *rawPatch) Write(b []byte) error {
	_ = p.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	n, err := p.conn.Write(b)
	p.sent += int64(n)
	return err
}

// WriteSlowly sends data in chunks of step bytes with a pause after each.
func (p *rawPatch) WriteSlowly(data []byte, step int, pause time.Duration) error {
	for len(data) > 0 {
		n := min(step, len(data))
		if err := p.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
		time.Sleep(pause)
	}
	return nil
}

// Response reads the server's answer within timeout.
func (p *rawPatch) Response(timeout time.Duration) (reply, error) {
	_ = p.conn.SetReadDeadline(time.Now().Add(timeout))
	resp, err := http.ReadResponse(p.br, &http.Request{Method: "PATCH"})
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// Close drops the connection (a client that vanished).
func (p *rawPatch) Close() { p.conn.Close() }
