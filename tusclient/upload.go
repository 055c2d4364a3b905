package tusclient

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"time"
)

// Result describes one finished Upload.
type Result struct {
	// Location is the upload URL the server created.
	Location string
	// CreateBody is the POST response body (roughy answers JSON).
	CreateBody []byte
	// Size is the number of bytes uploaded.
	Size int64
	// Elapsed runs from sending the POST to receiving the last 204.
	Elapsed time.Duration
	// Create is the latency of the creation POST.
	Create time.Duration
	// Patches holds the latency of every PATCH, in order.
	Patches []time.Duration
}

// Upload creates an upload of size bytes and sends src[base:base+size] in
// ChunkSize PATCHes, with no retry: a benchmark wants the first failure.
// The clock runs from the POST to the last 204.
func (c *Client) Upload(ctx context.Context, src io.ReaderAt, base, size int64) (Result, error) {
	if c.ChunkSize <= 0 {
		return Result{}, fmt.Errorf("%s: ChunkSize must be > 0", c.name())
	}
	start := time.Now()
	cr, err := c.Create(ctx, size)
	if err != nil {
		return Result{}, err
	}
	res := Result{Location: cr.URL, CreateBody: cr.Body, Size: size, Create: time.Since(start)}
	var off int64
	for i := 0; off < size; i++ {
		n := min(c.ChunkSize, size-off)
		target, err := c.rotated(cr.URL, i)
		if err != nil {
			return res, err
		}
		t0 := time.Now()
		got, err := c.patchAt(ctx, target, src, base, off, n)
		if err != nil {
			return res, err
		}
		res.Patches = append(res.Patches, time.Since(t0))
		if got != off+n {
			return res, fmt.Errorf("%s: PATCH at %d: server offset %d, want %d", c.name(), off, got, off+n)
		}
		off = got
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

func (c *Client) rotated(loc string, i int) (string, error) {
	if len(c.Rotate) == 0 {
		return loc, nil
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("%s: parse location %q: %w", c.name(), loc, err)
	}
	u.Host = c.Rotate[i%len(c.Rotate)]
	return u.String(), nil
}
