package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestStallConnSlowReaderKeepsWriting: one Write that takes far longer
// than the stall limit succeeds while the reader keeps taking bytes; a
// deadline per Write call would cut it after the first stall period.
func TestStallConnSlowReaderKeepsWriting(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &stallConn{Conn: a, stall: 300 * time.Millisecond}
	data := make([]byte, 16<<10)
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 1<<10)
		for got := 0; got < len(data); {
			time.Sleep(50 * time.Millisecond) // 16 reads: 0.8 s in all
			n, err := b.Read(buf)
			if err != nil {
				done <- err
				return
			}
			got += n
		}
		done <- nil
	}()
	if n, err := c.Write(data); err != nil || n != len(data) {
		t.Fatalf("Write to a slow steady reader: %d, %v; want %d, nil", n, err, len(data))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestStallConnCutsStalledWrite: a Write nobody reads fails with a
// timeout after the stall limit, and the caller's own earlier deadline
// wins over it.
func TestStallConnCutsStalledWrite(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &stallConn{Conn: a, stall: 200 * time.Millisecond}
	// Takes a little, then stops reading; what it read is checked through
	// the Write's count.
	go func() { _, _ = io.CopyN(io.Discard, b, 100) }()
	n, err := c.Write(make([]byte, 4<<10))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n != 100 {
		t.Fatalf("stalled Write: %d, %v; want 100 bytes, then a deadline error", n, err)
	}

	if err := c.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past the caller's deadline: %v, want a deadline error", err)
	}
}
