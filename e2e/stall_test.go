package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"testing"
	"time"
)

// uploadReady uploads data in 8 MiB PATCHes and returns its download_url
// once the asset is ready (the bytes checked by wantReady).
func uploadReady(t *testing.T, s *server, data []byte) string {
	t.Helper()
	up := createUpload(t, s, acmeKey, int64(len(data)))
	for off := 0; off < len(data); off += 8 << 20 {
		end := min(off+8<<20, len(data))
		if rep := patch(t, up.Location, acmeKey, int64(off), data[off:end]); rep.Status != http.StatusNoContent {
			t.Fatalf("PATCH at %d: got %d %s", off, rep.Status, rep.Body)
		}
	}
	return wantReady(t, s, acmeKey, up.AssetID, data).DownloadURL
}

// dialDownload sends a GET of the download URL u on a raw connection
// with a small receive buffer (so the server's writes block soon) and
// returns the connection, nothing read yet.
func dialDownload(t *testing.T, u string) net.Conn {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", pu.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.(*net.TCPConn).SetReadBuffer(32 << 10); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", pu.RequestURI(), pu.Host); err != nil {
		t.Fatal(err)
	}
	return c
}

// readBody reads the response on c (headers, then the body) until the
// server closes it or deadline, returning the body bytes read and how
// reading ended.
func readBody(t *testing.T, c net.Conn, pace func(n int)) ([]byte, error) {
	t.Helper()
	br := bufio.NewReaderSize(c, 16<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("download: got %d", resp.StatusCode)
	}
	var body bytes.Buffer
	buf := make([]byte, 16<<10)
	for {
		n, err := resp.Body.Read(buf)
		body.Write(buf[:n])
		if err != nil {
			return body.Bytes(), err
		}
		if pace != nil {
			pace(n)
		}
	}
}

// waitOpenFiles polls for up to 20 s until ok(number of pid's open files
// whose path contains name).
func waitOpenFiles(t *testing.T, pid int, name string, ok func(int) bool) {
	t.Helper()
	n := 0
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Skipf("no /proc: %v", err)
		}
		n = 0
		for _, fd := range fds {
			if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.Contains(target, name) {
				n++
			}
		}
		if ok(n) {
			return
		}
	}
	t.Fatalf("roughy has %d open files named after %s", n, name)
}

// TestDownloadStallCut: a client that asks for a download and reads
// nothing has its connection closed once a write made no progress for
// --download-stall-timeout; before, the connection, its goroutine and the
// open object stayed for as long as TCP kept the socket.
func TestDownloadStallCut(t *testing.T) {
	s := startServer(t, withArgs("--download-stall-timeout", "2s"))
	data := randomBytes(24 << 20)
	u := uploadReady(t, s, data)

	pu, _ := url.Parse(u)
	id := path.Base(pu.Path)
	c := dialDownload(t, u)
	// The download holds the object open while it is sent.
	waitOpenFiles(t, s.PID(), id, func(n int) bool { return n > 0 })
	// Reading nothing, until the server gave up on the connection.
	waitMetric(t, s, "roughy_stalled_writes_total", func(v int64) bool { return v >= 1 })
	// And with the connection, the object is closed.
	waitOpenFiles(t, s.PID(), id, func(n int) bool { return n == 0 })
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := readBody(t, c, nil)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open 30 s after the stall was counted (%d bytes read)", len(got))
	}
	if err == nil || len(got) >= len(data) {
		t.Fatalf("read %d of %d bytes, ending with %v: want the connection cut before the whole body", len(got), len(data), err)
	}
	if !bytes.Equal(got, data[:len(got)]) {
		t.Fatalf("the %d bytes that did arrive differ from the source", len(got))
	}
	t.Logf("stalled reader: connection closed after %d of %d bytes (%v)", len(got), len(data), err)
	// The server is fine and serves the whole download to a reader.
	wantDownload(t, "after the stall", u, data)
}

// TestDownloadSlowReaderNotCut: a reader that keeps taking bytes, slowly
// (256 KiB/s through a 32 KiB receive buffer, so the server's writes
// block on it all along), gets the whole body however much longer than
// --download-stall-timeout the download takes.
func TestDownloadSlowReaderNotCut(t *testing.T) {
	s := startServer(t, withArgs("--download-stall-timeout", "1s"))
	data := randomBytes(2 << 20)
	u := uploadReady(t, s, data)

	c := dialDownload(t, u)
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	const rate = 256 << 10 // bytes per second
	start, total := time.Now(), 0
	got, err := readBody(t, c, func(n int) {
		total += n
		if ahead := time.Duration(total)*time.Second/rate - time.Since(start); ahead > 0 {
			time.Sleep(ahead)
		}
	})
	if err != io.EOF && (err != nil || len(got) != len(data)) {
		// A keep-alive response ends at Content-Length: Body returns EOF.
		t.Fatalf("slow read ended with %v after %d of %d bytes in %v", err, len(got), len(data), time.Since(start))
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("slow download: got %d bytes, want the %d of the source byte for byte", len(got), len(data))
	}
	if v := metric(t, s, "roughy_stalled_writes_total"); v != 0 {
		t.Errorf("roughy_stalled_writes_total = %d after a slow but steady download, want 0", v)
	}
	t.Logf("slow reader: %d bytes in %v", len(got), time.Since(start))
}
