package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The request benchmarks measure the server's cost of one small request:
// a keep-alive connection, request bytes built before the timer starts and
// a response reader that allocates nothing, so allocs/op and B/op are (up
// to the runtime's own) the server's. The log level is the binary's
// default, info: the harness's debug logger would add a log line per
// request that production does not write.

// benchConn is one keep-alive connection to e's server.
type benchConn struct {
	b  *testing.B
	c  net.Conn
	br *bufio.Reader
}

// newBenchEnv is newEnv with the binary's default log level.
func newBenchEnv(b *testing.B) *env {
	b.Helper()
	return newEnv(b, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}, nil)
}

func newBenchConn(b *testing.B, e *env) *benchConn {
	b.Helper()
	c, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		b.Fatalf("dial: %v", err)
	}
	b.Cleanup(func() { c.Close() })
	return &benchConn{b: b, c: c, br: bufio.NewReaderSize(c, 16<<10)}
}

// benchReq is the head of one request whose body (sent after it) is body.
func benchReq(e *env, method, path string, h map[string]string, body []byte) []byte {
	var w bytes.Buffer
	fmt.Fprintf(&w, "%s %s HTTP/1.1\r\nHost: %s\r\nTus-Resumable: 1.0.0\r\nAuthorization: Bearer %s\r\n", method, path, e.addr, e.keys["acme"])
	for k, v := range h {
		fmt.Fprintf(&w, "%s: %s\r\n", k, v)
	}
	if method != "HEAD" { // as clients send them: a HEAD has no Content-Length
		fmt.Fprintf(&w, "Content-Length: %d\r\n", len(body))
	}
	w.WriteString("\r\n")
	return w.Bytes()
}

// roundTrip sends req and reads the answer's head; it returns the status
// and, when loc is set, the Location header. A body is discarded.
func (bc *benchConn) roundTrip(req, body []byte, method string, loc bool) (int, string) {
	if _, err := bc.c.Write(req); err != nil {
		bc.b.Fatalf("write: %v", err)
	}
	if _, err := bc.c.Write(body); err != nil {
		bc.b.Fatalf("write body: %v", err)
	}
	line, err := bc.br.ReadSlice('\n')
	if err != nil || len(line) < 12 {
		bc.b.Fatalf("status line %q: %v", line, err)
	}
	status := int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	var location string
	n := 0
	for {
		line, err = bc.br.ReadSlice('\n')
		if err != nil {
			bc.b.Fatalf("header: %v", err)
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok {
			v = bytes.TrimSpace(v)
			switch {
			case bytes.EqualFold(k, []byte("Content-Length")):
				n, _ = strconv.Atoi(string(v))
			case loc && bytes.EqualFold(k, []byte("Location")):
				location = string(v)
			}
		}
	}
	if method != "HEAD" && n > 0 {
		if _, err := bc.br.Discard(n); err != nil {
			bc.b.Fatalf("body: %v", err)
		}
	}
	return status, location
}

// benchCreate is the request bytes of a POST creating an upload of length.
func benchCreate(e *env, length int) []byte {
	return benchReq(e, "POST", uploadsPath, map[string]string{
		"Upload-Length":   strconv.Itoa(length),
		"Upload-Metadata": md("type", "video", "content_type", "video/mp4", "filename", "clip.mp4"),
	}, nil)
}

// locPath is the path of a Location header.
func locPath(e *env, loc string) string { return strings.TrimPrefix(loc, e.url) }

// BenchmarkRequestPOST is one creation (POST of a 256 KiB upload).
func BenchmarkRequestPOST(b *testing.B) {
	e := newBenchEnv(b)
	bc := newBenchConn(b, e)
	req := benchCreate(e, 256<<10)
	b.ReportAllocs()
	for b.Loop() {
		if st, _ := bc.roundTrip(req, nil, "POST", false); st != 201 {
			b.Fatalf("POST: %d", st)
		}
	}
}

// BenchmarkRequestHEAD is one HEAD of an upload in progress.
func BenchmarkRequestHEAD(b *testing.B) {
	e := newBenchEnv(b)
	bc := newBenchConn(b, e)
	st, loc := bc.roundTrip(benchCreate(e, 256<<10), nil, "POST", true)
	if st != 201 {
		b.Fatalf("POST: %d", st)
	}
	req := benchReq(e, "HEAD", locPath(e, loc), nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		if st, _ := bc.roundTrip(req, nil, "HEAD", false); st != 200 {
			b.Fatalf("HEAD: %d", st)
		}
	}
}

// BenchmarkRequestPATCH is one 256 KiB PATCH that completes its upload
// (commit, fsyncs, the asset turning ready). The uploads are created
// before the timer starts.
func BenchmarkRequestPATCH(b *testing.B) {
	e := newBenchEnv(b)
	bc := newBenchConn(b, e)
	body := bytes.Repeat([]byte("roughy!\n"), 256<<10/8)
	create := benchCreate(e, len(body))
	reqs := make([][]byte, b.N)
	for i := range reqs {
		st, loc := bc.roundTrip(create, nil, "POST", true)
		if st != 201 {
			b.Fatalf("POST: %d", st)
		}
		reqs[i] = benchReq(e, "PATCH", locPath(e, loc), map[string]string{
			"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
		}, body)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if st, _ := bc.roundTrip(reqs[i], body, "PATCH", false); st != 204 {
			b.Fatalf("PATCH: %d", st)
		}
	}
}
