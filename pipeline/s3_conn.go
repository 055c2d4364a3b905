package pipeline

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// bulkConn is a connection to S3 that sends a request body straight from
// its buffer. net/http copies a body with a Content-Length through
// io.LimitReader into the connection's ReadFrom; a plain *net.TCPConn then
// falls back to io.Copy, which memmoves every part through a 32 KiB buffer
// and makes 512 write calls per 16 MiB part. A part body (bytes.Reader
// over a pool buffer, wrapped by the SDK in types that keep io.WriterTo)
// can write itself: bulkConn lets it, so a part is handed to the kernel
// from the buffer it was read and hashed into, in as few writes as the
// socket takes.
//
// With a stall timeout, bulkConn is also what notices an S3 that stopped
// answering (a blackholed network, a hung endpoint): every read and every
// piece of a write pushes the connection's deadline stall ahead, so a
// request that makes no progress for that long fails with a timeout (which
// the SDK retries, and which in the end is ErrStorage: a 503 for the
// client), while a slow part that keeps moving is never cut. Writes go out
// in pieces of at most stallPiece, still straight from the buffer, so that
// a piece on a slow link takes well under the stall timeout. The read
// deadline moves with writes too: the transport's reader waits for the
// response while a long body is still being sent.
type bulkConn struct {
	net.Conn
	stall time.Duration // 0: no deadlines
}

// stallPiece is the most a write hands the socket under one deadline:
// at 30 s it asks no more than 35 KiB/s of the link.
const stallPiece = 1 << 20

// progress pushes the deadline stall ahead.
func (c bulkConn) progress() {
	if c.stall > 0 {
		// A failure means the conn is closed; its next Read or Write
		// reports that.
		_ = c.SetDeadline(time.Now().Add(c.stall))
	}
}

// Read implements io.Reader.
func (c bulkConn) Read(p []byte) (int, error) {
	c.progress()
	return c.Conn.Read(p)
}

// Write implements io.Writer.
func (c bulkConn) Write(p []byte) (int, error) {
	if c.stall <= 0 {
		return c.Conn.Write(p)
	}
	var n int
	for len(p) > 0 {
		c.progress()
		m, err := c.Conn.Write(p[:min(len(p), stallPiece)])
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

// bulkSends counts bodies sent from their own buffer (tests check that
// the SDK's part uploads take this path).
var bulkSends atomic.Int64

// errBodyLimit ends a body's WriteTo at the request's Content-Length.
var errBodyLimit = errors.New("pipeline: body longer than its Content-Length")

// ReadFrom implements io.ReaderFrom.
func (c bulkConn) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if wt, ok := lr.R.(io.WriterTo); ok {
			bulkSends.Add(1)
			lw := &limitWriter{w: c, n: lr.N}
			n, err := wt.WriteTo(lw)
			lr.N -= n
			if errors.Is(err, errBodyLimit) {
				// Exactly Content-Length bytes went out; net/http finds
				// the rest of the body and reports the mismatch.
				err = nil
			}
			return n, err
		}
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok && c.stall <= 0 {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c}, r)
}

// limitWriter writes at most n bytes to w.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) <= l.n {
		n, err := l.w.Write(p)
		l.n -= int64(n)
		return n, err
	}
	n, err := l.w.Write(p[:l.n])
	l.n -= int64(n)
	if err == nil {
		err = errBodyLimit
	}
	return n, err
}

// bulkDialer wraps dial so that every connection it makes is a bulkConn
// with the given stall timeout.
func bulkDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error), stall time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return bulkConn{Conn: c, stall: stall}, nil
	}
}
