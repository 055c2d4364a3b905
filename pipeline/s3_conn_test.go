package pipeline

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/roughy/ingest/internal/testsvc"
)

// recordConn is a net.Conn that keeps what is written and the address of
// the first byte of every Write.
type recordConn struct {
	net.Conn  // nil: only Write is used
	buf       bytes.Buffer
	firsts    []*byte
	deadlines int
}

// SetDeadline counts the deadlines set (a stall timeout's progress).
func (c *recordConn) SetDeadline(time.Time) error {
	c.deadlines++
	return nil
}

func (c *recordConn) Write(p []byte) (int, error) {
	if len(p) > 0 {
		c.firsts = append(c.firsts, &p[0])
	}
	return c.buf.Write(p)
}

// TestBulkConnWritesFromTheBuffer checks the copy bulkConn saves: a body
// that can write itself goes to the connection in one Write straight from
// its buffer (the same address, no staging copy), at most Content-Length
// bytes of it; other readers are copied as before.
func TestBulkConnWritesFromTheBuffer(t *testing.T) {
	part := testData(30, 1<<20)
	rc := &recordConn{}
	c := bulkConn{Conn: rc}
	before := bulkSends.Load()
	// What net/http hands the connection: LimitReader over the SDK's
	// wrappers, which keep io.WriterTo (io.NopCloser does too).
	lr := io.LimitReader(io.NopCloser(bytes.NewReader(part)), int64(len(part))).(*io.LimitedReader)
	n, err := c.ReadFrom(lr)
	if err != nil || n != int64(len(part)) || lr.N != 0 {
		t.Fatalf("ReadFrom = %d, %v (limit left %d), want %d, nil, 0", n, err, lr.N, len(part))
	}
	if len(rc.firsts) != 1 || unsafe.Pointer(rc.firsts[0]) != unsafe.Pointer(&part[0]) {
		t.Fatalf("%d writes, first from %p; want one write from the part buffer %p", len(rc.firsts), rc.firsts[0], &part[0])
	}
	if !bytes.Equal(rc.buf.Bytes(), part) || bulkSends.Load() != before+1 {
		t.Fatalf("bytes differ or bulk path not counted")
	}

	// A body longer than Content-Length: exactly the limit goes out.
	rc = &recordConn{}
	c = bulkConn{Conn: rc}
	br := bytes.NewReader(part)
	lr = &io.LimitedReader{R: br, N: 1000}
	if n, err := c.ReadFrom(lr); err != nil || n != 1000 || lr.N != 0 || br.Len() != len(part)-1000 {
		t.Fatalf("limited ReadFrom = %d, %v, limit left %d, reader left %d", n, err, lr.N, br.Len())
	}
	if !bytes.Equal(rc.buf.Bytes(), part[:1000]) {
		t.Fatal("limited body: wrong bytes")
	}

	// A reader that cannot write itself is copied.
	rc = &recordConn{}
	c = bulkConn{Conn: rc}
	if n, err := c.ReadFrom(io.LimitReader(strings.NewReader("abc"), 2)); err != nil || n != 2 || rc.buf.String() != "ab" {
		t.Fatalf("fallback ReadFrom = %d, %v, %q", n, err, rc.buf.String())
	}
}

// TestBulkConnStallPieces: with a stall timeout, a part still goes out
// straight from its buffer, in pieces of at most stallPiece, each under a
// deadline pushed ahead (a slow link that keeps moving is never cut).
func TestBulkConnStallPieces(t *testing.T) {
	part := testData(32, 5<<20+123)
	rc := &recordConn{}
	c := bulkConn{Conn: rc, stall: time.Minute}
	lr := io.LimitReader(io.NopCloser(bytes.NewReader(part)), int64(len(part))).(*io.LimitedReader)
	if n, err := c.ReadFrom(lr); err != nil || n != int64(len(part)) {
		t.Fatalf("ReadFrom = %d, %v, want %d, nil", n, err, len(part))
	}
	if !bytes.Equal(rc.buf.Bytes(), part) {
		t.Fatal("bytes differ")
	}
	want := (len(part) + stallPiece - 1) / stallPiece
	if len(rc.firsts) != want || rc.deadlines != want {
		t.Fatalf("%d writes under %d deadlines, want %d of each (pieces of %d)", len(rc.firsts), rc.deadlines, want, stallPiece)
	}
	for i, p := range rc.firsts {
		if unsafe.Pointer(p) != unsafe.Pointer(&part[i*stallPiece]) {
			t.Fatalf("write %d from %p, want from the part buffer at %p", i, p, &part[i*stallPiece])
		}
	}
}

// TestS3PartsSentFromBuffer uploads a PATCH of four parts to versitygw and
// checks that every part upload took the bulk path through the SDK and
// net/http (their wrappers keep io.WriterTo), not the 32 KiB copy.
func TestS3PartsSentFromBuffer(t *testing.T) {
	e := newS3Env(t, testsvc.Versitygw, S3LayoutDefault)
	data := testData(31, 4*s3TargetPartSize)
	su := e.create(t, "uploads/bulk", int64(len(data)))
	before := bulkSends.Load()
	if _, _, err := su.write(t.Context(), bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	if got := bulkSends.Load() - before; got < 4 {
		t.Fatalf("%d bodies sent from their buffer, want at least 4 (one per part)", got)
	}
	su.complete(t)
	su.check(t, data)
}
