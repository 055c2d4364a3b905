// Package tusclient is the minimal TUS 1.0.0 client that the benchmark
// harness and the load generator drive servers with: one POST, then
// fixed-size PATCHes read straight from an io.ReaderAt (never a whole chunk
// in memory), each with its Content-Length set. From an *os.File the bodies
// go out with sendfile(2), so that the client costs the shared cores as
// little as it can.
package tusclient

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrStatus is wrapped by every error about an unexpected HTTP status.
var ErrStatus = errors.New("tusclient: unexpected status")

// Client uploads files to one TUS creation endpoint.
type Client struct {
	// HTTP sends the requests; nil means NewHTTPClient(0).
	HTTP *http.Client
	// Endpoint is the creation URL (POST target).
	Endpoint string
	// Header is added to every request (e.g. Authorization).
	Header http.Header
	// Metadata is sent as Upload-Metadata on the POST (nil: no header).
	Metadata map[string]string
	// ChunkSize is the body size of each PATCH.
	ChunkSize int64
	// Rotate, when set, lists host:port pairs that PATCH number i is sent
	// to in turn (i mod len), so that one upload crosses every node of a
	// fleet. The first request (POST) goes to Endpoint.
	Rotate []string
}

// Result describes one finished upload.
type Result struct {
	// Location is the upload URL the server created.
	Location string
	// CreateBody is the POST response body (roughy answers JSON).
	CreateBody []byte
	// Size is the number of bytes uploaded.
	Size int64
	// Elapsed runs from sending the POST to receiving the last 204.
	Elapsed time.Duration
	// Patches holds the latency of every PATCH, in order.
	Patches []time.Duration
}

// NewHTTPClient returns a keep-alive HTTP/1.1 client suited to large
// bodies: larger write buffers, no compression, no overall timeout (a
// 64 MiB PATCH on a busy 2-core machine can take seconds); timeout bounds
// each request instead when > 0.
func NewHTTPClient(timeout time.Duration) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		WriteBufferSize:     256 << 10,
		ReadBufferSize:      64 << 10,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// EncodeMetadata renders m as an Upload-Metadata header value (keys sorted
// so that requests are reproducible).
func EncodeMetadata(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+" "+base64.StdEncoding.EncodeToString([]byte(m[k])))
	}
	return strings.Join(parts, ",")
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return NewHTTPClient(0)
}

func (c *Client) newRequest(ctx context.Context, method, target string, body io.Reader, n int64) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("tusclient: new %s request: %w", method, err)
	}
	for k, vs := range c.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	if body != nil {
		req.ContentLength = n
	}
	return req, nil
}

// Create sends the POST for an upload of size bytes and returns the
// absolute upload URL and the response body.
func (c *Client) Create(ctx context.Context, size int64) (string, []byte, error) {
	req, err := c.newRequest(ctx, http.MethodPost, c.Endpoint, nil, 0)
	if err != nil {
		return "", nil, err
	}
	req.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
	if c.Metadata != nil {
		req.Header.Set("Upload-Metadata", EncodeMetadata(c.Metadata))
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return "", nil, fmt.Errorf("tusclient: create: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", nil, fmt.Errorf("tusclient: create: read body: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		return "", body, fmt.Errorf("tusclient: create: %w %d: %s", ErrStatus, resp.StatusCode, trim(body))
	}
	loc, err := resolve(c.Endpoint, resp.Header.Get("Location"))
	if err != nil {
		return "", body, err
	}
	return loc, body, nil
}

// Patch sends n bytes of src starting at off as one PATCH at upload
// offset off and returns the new offset the server reported.
func (c *Client) Patch(ctx context.Context, location string, src io.ReaderAt, off, n int64) (int64, error) {
	return c.patch(ctx, location, io.NewSectionReader(src, off, n), off, n)
}

// patchFile is Patch from src[base+off:], sent by the kernel: net/http
// hands the body (behind its Content-Length limit) to the connection's
// ReadFrom, which uses sendfile(2) from the file's offset for any
// syscall.Conn. A new descriptor per PATCH keeps concurrent uploads'
// offsets apart; the transport closes it.
func (c *Client) patchFile(ctx context.Context, location string, src *os.File, base, off, n int64) (int64, error) {
	f, err := os.Open(src.Name())
	if err != nil {
		return 0, fmt.Errorf("tusclient: patch at %d: %w", off, err)
	}
	if _, err := f.Seek(base+off, io.SeekStart); err != nil {
		f.Close()
		return 0, fmt.Errorf("tusclient: patch at %d: %w", off, err)
	}
	return c.patch(ctx, location, &fileSection{File: f, end: base + off + n}, off, n)
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

func (c *Client) patch(ctx context.Context, location string, body io.Reader, off, n int64) (int64, error) {
	req, err := c.newRequest(ctx, http.MethodPatch, location, body, n)
	if err != nil {
		if cl, ok := body.(io.Closer); ok {
			cl.Close()
		}
		return 0, err
	}
	req.Header.Set("Upload-Offset", strconv.FormatInt(off, 10))
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return 0, fmt.Errorf("tusclient: patch at %d: %w", off, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusNoContent {
		return 0, fmt.Errorf("tusclient: patch at %d: %w %d: %s", off, ErrStatus, resp.StatusCode, trim(msg))
	}
	got, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("tusclient: patch at %d: bad Upload-Offset %q: %w", off, resp.Header.Get("Upload-Offset"), err)
	}
	return got, nil
}

// Head returns the server's offset for an upload.
func (c *Client) Head(ctx context.Context, location string) (int64, error) {
	req, err := c.newRequest(ctx, http.MethodHead, location, nil, 0)
	if err != nil {
		return 0, err
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return 0, fmt.Errorf("tusclient: head: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("tusclient: head: %w %d", ErrStatus, resp.StatusCode)
	}
	off, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("tusclient: head: bad Upload-Offset: %w", err)
	}
	return off, nil
}

// Upload creates an upload of size bytes and sends src[base:base+size] in
// ChunkSize PATCHes. The clock runs from the POST to the last 204.
func (c *Client) Upload(ctx context.Context, src io.ReaderAt, base, size int64) (Result, error) {
	if c.ChunkSize <= 0 {
		return Result{}, errors.New("tusclient: ChunkSize must be > 0")
	}
	start := time.Now()
	loc, body, err := c.Create(ctx, size)
	if err != nil {
		return Result{}, err
	}
	res := Result{Location: loc, CreateBody: body, Size: size}
	var off int64
	for i := 0; off < size; i++ {
		n := min(c.ChunkSize, size-off)
		target, err := c.rotated(loc, i)
		if err != nil {
			return res, err
		}
		t0 := time.Now()
		var got int64
		if f, ok := src.(*os.File); ok {
			got, err = c.patchFile(ctx, target, f, base, off, n)
		} else {
			got, err = c.Patch(ctx, target, offsetReaderAt{src, base}, off, n)
		}
		if err != nil {
			return res, err
		}
		res.Patches = append(res.Patches, time.Since(t0))
		if got != off+n {
			return res, fmt.Errorf("tusclient: patch at %d: server offset %d, want %d", off, got, off+n)
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
		return "", fmt.Errorf("tusclient: parse location %q: %w", loc, err)
	}
	u.Host = c.Rotate[i%len(c.Rotate)]
	return u.String(), nil
}

// offsetReaderAt shifts reads by base so that an upload's offset 0 maps to
// src[base].
type offsetReaderAt struct {
	src  io.ReaderAt
	base int64
}

func (o offsetReaderAt) ReadAt(p []byte, off int64) (int, error) {
	return o.src.ReadAt(p, o.base+off)
}

func resolve(base, loc string) (string, error) {
	if loc == "" {
		return "", errors.New("tusclient: create: no Location header")
	}
	b, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("tusclient: parse endpoint: %w", err)
	}
	l, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("tusclient: parse Location %q: %w", loc, err)
	}
	return b.ResolveReference(l).String(), nil
}

func trim(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
