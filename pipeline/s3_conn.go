package pipeline

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
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
type bulkConn struct {
	net.Conn
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
			lw := &limitWriter{w: c.Conn, n: lr.N}
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
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
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

// bulkDialer wraps dial so that every connection it makes is a bulkConn.
func bulkDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return bulkConn{c}, nil
	}
}
