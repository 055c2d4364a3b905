package tusclient

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

// Patch sends bytes [off, off+n) of src as one PATCH at upload offset off
// and returns the new offset the server reported, which lies in
// [off, off+n].
func (c *Client) Patch(ctx context.Context, uploadURL string, src io.ReaderAt, off, n int64) (int64, error) {
	return c.patchAt(ctx, uploadURL, src, 0, off, n)
}

// patchAt is Patch with upload offset 0 at src[base].
func (c *Client) patchAt(ctx context.Context, uploadURL string, src io.ReaderAt, base, off, n int64) (int64, error) {
	op := fmt.Sprintf("PATCH at %d", off)
	var sum string
	if c.Checksum {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(src, base+off, n)); err != nil {
			return 0, fmt.Errorf("%s: read file: %w", c.name(), err)
		}
		sum = "sha256 " + base64.StdEncoding.EncodeToString(h.Sum(nil))
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	body, stop, err := c.body(src, base, off, n, cancel)
	if err != nil {
		return 0, fmt.Errorf("%s: %s: %w", c.name(), op, err)
	}
	defer stop()
	req, err := c.NewRequest(ctx, http.MethodPatch, uploadURL, body)
	if err != nil {
		if cl, ok := body.(io.Closer); ok {
			cl.Close()
		}
		return 0, err
	}
	req.ContentLength = n
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", strconv.FormatInt(off, 10))
	if sum != "" {
		req.Header.Set("Upload-Checksum", sum)
	}
	resp, _, err := c.send(req, op, http.StatusNoContent)
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
			return 0, cause
		}
		return 0, err
	}
	newOff, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || newOff < off || newOff > off+n {
		return 0, fmt.Errorf("%s: %s: %w %q in the answer", c.name(), op, ErrBadOffset, resp.Header.Get("Upload-Offset"))
	}
	return newOff, nil
}

// errStalled is wrapped by the error of a PATCH that Stall cancelled.
var errStalled = errors.New("upload stalled")

// body returns the reader of a PATCH body and a function that stops its
// stall watchdog. Without anyone watching the bytes (no OnSent, no Stall)
// an *os.File is sent by the kernel; otherwise every read is counted.
func (c *Client) body(src io.ReaderAt, base, off, n int64, cancel context.CancelCauseFunc) (io.Reader, func(), error) {
	if n == 0 {
		return http.NoBody, func() {}, nil
	}
	if f, ok := src.(*os.File); ok && c.OnSent == nil && c.Stall <= 0 {
		s, err := openSection(f, base+off, n)
		return s, func() {}, err
	}
	sec := io.NewSectionReader(src, base+off, n)
	if c.OnSent == nil && c.Stall <= 0 {
		return sec, func() {}, nil
	}
	var watchdog *time.Timer
	if c.Stall > 0 {
		stalled := fmt.Errorf("%s: %w: no progress for %s", c.name(), errStalled, c.Stall)
		watchdog = time.AfterFunc(c.Stall, func() { cancel(stalled) })
	}
	counted := &countingReader{r: sec, fn: func(total int64) {
		if watchdog != nil {
			if total >= n {
				watchdog.Stop() // the transport's response timeout takes over
			} else {
				watchdog.Reset(c.Stall)
			}
		}
		if c.OnSent != nil {
			c.OnSent(off + total)
		}
	}}
	return counted, func() {
		if watchdog != nil {
			watchdog.Stop()
		}
	}, nil
}

// openSection opens src again for bytes [start, start+n). net/http hands
// such a body (behind its Content-Length limit) to the connection's
// ReadFrom, which uses sendfile(2) from the file's offset for any
// syscall.Conn. A new descriptor per PATCH keeps concurrent uploads'
// offsets apart; the transport closes it.
func openSection(src *os.File, start, n int64) (*fileSection, error) {
	f, err := os.Open(src.Name())
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return &fileSection{File: f, end: start + n}, nil
}

// fileSection is an open file read from its offset up to end. It keeps
// the file's SyscallConn (for sendfile), and its Read looks at the file's
// own offset, which sendfile advances, so net/http's check for bytes past
// Content-Length finds none.
type fileSection struct {
	*os.File
	end int64
}

func (s *fileSection) Read(p []byte) (int, error) {
	pos, err := s.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if pos >= s.end {
		return 0, io.EOF
	}
	if int64(len(p)) > s.end-pos {
		p = p[:s.end-pos]
	}
	return s.File.Read(p)
}

// WriteTo hides os.File's, which would send the whole rest of the file.
func (s *fileSection) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(w, struct{ io.Reader }{s})
}

// countingReader reports the running count of bytes read.
type countingReader struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.n += int64(n)
		c.fn(c.n)
	}
	return n, err
}
