package testsvc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// ErrStrict409 is StrictTUS giving up: a PATCH at the offset HEAD (or the
// PATCH before) reported got 409.
var ErrStrict409 = errors.New("testsvc: 409 for a PATCH at the offset the server reported")

// StrictTUS is a TUS client that, like github.com/eventials/go-tus and
// github.com/bdragon300/tusgo, resumes with HEAD, PATCHes in chunks and
// gives up on the first 409: it trusts the offset HEAD reported. It can
// be killed (its connection reset) after a budget of bytes.
type StrictTUS struct {
	t     testing.TB
	loc   string
	key   string
	chunk int
	// budget is how many more request bytes are sent before the client
	// is killed; limited is false for no limit.
	budget  atomic.Int64
	initial int64
	limited bool
	paused  bool
	killed  atomic.Bool
	http    *http.Client
}

// NewStrictTUS is a client of the upload at loc sending PATCHes of chunk
// bytes, killed once budget bytes of requests were written (0: never).
func NewStrictTUS(t testing.TB, loc, key string, chunk int, budget int64) *StrictTUS {
	c := &StrictTUS{t: t, loc: loc, key: key, chunk: chunk, initial: budget, limited: budget > 0}
	c.budget.Store(budget)
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &killConn{Conn: conn, c: c}, nil
	}}
	t.Cleanup(tr.CloseIdleConnections)
	c.http = &http.Client{Timeout: 2 * time.Minute, Transport: tr}
	return c
}

// Killed reports whether the client was killed.
func (c *StrictTUS) Killed() bool { return c.killed.Load() }

// At moves the client to another URL of the same upload (another node).
func (c *StrictTUS) At(loc string) { c.loc = loc }

// killConn resets its connection once the client's budget is spent.
type killConn struct {
	net.Conn
	c *StrictTUS
}

func (k *killConn) Write(p []byte) (int, error) {
	c := k.c
	if !c.limited {
		return k.Conn.Write(p)
	}
	if c.killed.Load() {
		return 0, net.ErrClosed
	}
	if !c.paused && c.initial-c.budget.Load() >= 256<<10 {
		// The connection dies mid-transfer, not within a millisecond of
		// the request's start: a request whose head the server has not
		// even read when the client's next request is answered is one it
		// cannot order (docs/design/takeover.md).
		time.Sleep(30 * time.Millisecond)
		c.paused = true
	}
	if left := c.budget.Load(); int64(len(p)) >= left {
		// The connection dies after these bytes whatever happens to them.
		_, _ = k.Conn.Write(p[:left])
		c.killed.Store(true)
		if tc, ok := k.Conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a reset, as a dead client's path gives
		}
		k.Close()
		return 0, net.ErrClosed
	}
	c.budget.Add(-int64(len(p)))
	return k.Conn.Write(p)
}

// Resume HEADs the upload and PATCHes the rest of data from there in
// chunks: nil once the upload is whole, ErrStrict409 (wrapped) on a 409,
// or the transport's error once the client is killed.
func (c *StrictTUS) Resume(data []byte) error {
	rep, _, err := c.do("HEAD", -1, nil)
	if err != nil {
		return err
	}
	var off int64
	if _, err := fmt.Sscan(rep.Header.Get("Upload-Offset"), &off); rep.StatusCode != http.StatusOK || err != nil {
		return fmt.Errorf("HEAD: %d, Upload-Offset %q", rep.StatusCode, rep.Header.Get("Upload-Offset"))
	}
	for off < int64(len(data)) {
		end := min(off+int64(c.chunk), int64(len(data)))
		rep, msg, err := c.do("PATCH", off, data[off:end])
		if err != nil {
			return err
		}
		switch rep.StatusCode {
		case http.StatusNoContent:
		case http.StatusConflict:
			return fmt.Errorf("%w: PATCH at %d: %s", ErrStrict409, off, msg)
		default:
			return fmt.Errorf("PATCH at %d: %d %s", off, rep.StatusCode, msg)
		}
		if _, err := fmt.Sscan(rep.Header.Get("Upload-Offset"), &off); err != nil {
			return fmt.Errorf("PATCH answer's Upload-Offset %q: %v", rep.Header.Get("Upload-Offset"), err)
		}
	}
	return nil
}

func (c *StrictTUS) do(method string, off int64, body []byte) (*http.Response, []byte, error) {
	r, err := http.NewRequestWithContext(c.t.Context(), method, c.loc, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	r.Header.Set("Authorization", "Bearer "+c.key)
	r.Header.Set("Tus-Resumable", "1.0.0")
	if method == "PATCH" {
		r.Header.Set("Upload-Offset", fmt.Sprint(off))
		r.Header.Set("Content-Type", "application/offset+octet-stream")
	}
	resp, err := c.http.Do(r)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp, msg, nil
}
