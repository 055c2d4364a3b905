package proxy

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// stallConn cuts a connection whose writes make no progress: a client that
// stops reading a download would otherwise hold the connection, its
// goroutine and the open object for as long as TCP keeps the socket
// (fasthttp's WriteTimeout is an absolute limit on a whole response, which
// a large download to a slow but steady reader must not have).
//
// Each Write arms a write deadline of stall from now; when it expires
// with some bytes accepted by the socket, the write goes on with a new
// deadline, so only a full stall period without one byte of progress
// fails it. Reads are untouched: upload bodies keep their own idle and
// rate limits (body.go).
//
// It sits under TLS, so the handshake and every record are covered too.
type stallConn struct {
	net.Conn
	stall   time.Duration
	stalled prometheus.Counter // nil: not counted
	// explicit is a write deadline set by a caller (an interim response,
	// a lingering close), in Unix nanoseconds; 0: none. Writes never wait
	// past it.
	explicit atomic.Int64
}

func (c *stallConn) Write(p []byte) (int, error) {
	var done int
	for {
		d := time.Now().Add(c.stall)
		if e := c.explicit.Load(); e != 0 && e < d.UnixNano() {
			d = time.Unix(0, e)
		}
		if err := c.Conn.SetWriteDeadline(d); err != nil {
			return done, err
		}
		n, err := c.Conn.Write(p[done:])
		done += n
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return done, err
		}
		e, now := c.explicit.Load(), time.Now().UnixNano()
		if e != 0 && now >= e {
			return done, err // the caller's deadline, not a stall
		}
		if n == 0 {
			if c.stalled != nil {
				c.stalled.Inc()
			}
			return done, err
		}
	}
}

func (c *stallConn) SetWriteDeadline(t time.Time) error {
	c.explicit.Store(unixNano(t))
	return c.Conn.SetWriteDeadline(t)
}

func (c *stallConn) SetDeadline(t time.Time) error {
	c.explicit.Store(unixNano(t))
	return c.Conn.SetDeadline(t)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// stallListener wraps every accepted connection in a stallConn.
type stallListener struct {
	net.Listener
	stall   time.Duration
	stalled prometheus.Counter
}

func (l stallListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &stallConn{Conn: c, stall: l.stall, stalled: l.stalled}, nil
}
