// Package tusclient is the Go client of TUS 1.0.0 (core, creation and
// checksum) that "roughy upload", the benchmark harness and the load
// generator share.
//
// Bodies are read straight from an io.ReaderAt (never a whole chunk in
// memory), each PATCH with its Content-Length set. From an *os.File that
// nobody watches byte by byte (no OnSent, no Stall) they go out with
// sendfile(2), so that a benchmark client costs the shared cores as little
// as it can. Upload is the timed, fail-fast upload of the benchmarks; Send
// is the patient one of a command-line client: it retries under a Retry
// policy and, after a failure, asks the server (HEAD) where to go on.
package tusclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client uploads to one TUS creation endpoint.
type Client struct {
	// HTTP sends the requests; nil means NewHTTPClient(0).
	HTTP *http.Client
	// Endpoint is the creation URL (POST target).
	Endpoint string
	// Header is added to every request (e.g. Authorization).
	Header http.Header
	// Metadata is sent in this order as Upload-Metadata on the POST (see
	// EncodeMetadata; empty: no header).
	Metadata [][2]string
	// ChunkSize is the body size of each PATCH of Upload and Send.
	ChunkSize int64
	// Rotate, when set, lists host:port pairs that PATCH number i of
	// Upload is sent to in turn (i mod len), so that one upload crosses
	// every node of a fleet. The POST goes to Endpoint.
	Rotate []string
	// Checksum sends each PATCH's SHA-256 as Upload-Checksum (the chunk is
	// read twice: once to hash it, once to send it).
	Checksum bool
	// Stall cancels a PATCH whose body made no progress for this long
	// (0: never).
	Stall time.Duration
	// OnSent, when set, is told the upload offset that the body of the
	// PATCH in flight has reached.
	OnSent func(offset int64)
	// OnAcked, when set, is told by Send the offset the server confirmed:
	// after a PATCH's 204 (patched), after a HEAD, and the last confirmed
	// one again after a failed PATCH.
	OnAcked func(offset int64, patched bool)
	// Name starts every error message; "tusclient" when empty. A command
	// sets its own so that the messages it prints read as its own.
	Name string
}

// NewHTTPClient returns a keep-alive HTTP/1.1 client suited to large
// bodies on a local network: larger write buffers, no compression, no
// overall timeout (a 64 MiB PATCH on a busy 2-core machine can take
// seconds); timeout bounds each request instead when > 0.
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

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return NewHTTPClient(0)
}

func (c *Client) name() string {
	if c.Name == "" {
		return "tusclient"
	}
	return c.Name
}

// NewRequest returns a request with the client's Header and
// Tus-Resumable: 1.0.0, for the calls this package does not make itself
// (a DELETE, a PATCH body streamed from a pipe).
func (c *Client) NewRequest(ctx context.Context, method, target string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %s %s: %w", c.name(), method, target, err)
	}
	for k, vs := range c.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	return req, nil
}

// send does req and turns any status other than want into a
// *StatusError. The body of the response is returned (up to 1 MiB).
func (c *Client) send(req *http.Request, op string, want int) (*http.Response, []byte, error) {
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %s: %w", c.name(), op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		se := &StatusError{Method: req.Method, Op: op, Status: resp.StatusCode, Body: string(body), name: c.name()}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			se.RetryAfter = time.Duration(s) * time.Second
		}
		return resp, body, se
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %s: read body: %w", c.name(), op, err)
	}
	return resp, body, nil
}

// Created is the answer to a creation POST.
type Created struct {
	// URL is the absolute upload URL (Location resolved against the
	// endpoint).
	URL string
	// Body is the response body (Roughy answers JSON).
	Body []byte
}

// AssetID is the asset id of Roughy's JSON answer, else the last segment
// of the upload URL (what other servers name an upload by).
func (cr Created) AssetID() string {
	var j struct {
		Asset struct {
			ID string `json:"id"`
		} `json:"asset"`
	}
	if json.Unmarshal(cr.Body, &j) == nil && j.Asset.ID != "" {
		return j.Asset.ID
	}
	return cr.URL[strings.LastIndexByte(strings.TrimRight(cr.URL, "/"), '/')+1:]
}

// Create POSTs a new upload of size bytes with the client's Metadata.
func (c *Client) Create(ctx context.Context, size int64) (Created, error) {
	req, err := c.NewRequest(ctx, http.MethodPost, c.Endpoint, nil)
	if err != nil {
		return Created{}, err
	}
	req.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
	if md := EncodeMetadata(c.Metadata); md != "" {
		req.Header.Set("Upload-Metadata", md)
	}
	resp, body, err := c.send(req, "create upload", http.StatusCreated)
	if err != nil {
		return Created{}, err
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return Created{}, fmt.Errorf("%s: create upload: no Location in the answer", c.name())
	}
	base, err := url.Parse(c.Endpoint)
	if err != nil {
		return Created{}, fmt.Errorf("%s: endpoint: %w", c.name(), err)
	}
	ref, err := url.Parse(loc)
	if err != nil {
		return Created{}, fmt.Errorf("%s: create upload: bad Location %q: %w", c.name(), loc, err)
	}
	return Created{URL: base.ResolveReference(ref).String(), Body: body}, nil
}

// Head returns the server's offset of an upload and its length (-1 when
// deferred).
func (c *Client) Head(ctx context.Context, uploadURL string) (offset, length int64, err error) {
	req, err := c.NewRequest(ctx, http.MethodHead, uploadURL, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, _, err := c.send(req, "resume (HEAD)", http.StatusOK)
	if err != nil {
		return 0, 0, err
	}
	off, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || off < 0 {
		return 0, 0, fmt.Errorf("%s: resume (HEAD): %w %q", c.name(), ErrBadOffset, resp.Header.Get("Upload-Offset"))
	}
	length = -1
	if l := resp.Header.Get("Upload-Length"); l != "" {
		if length, err = strconv.ParseInt(l, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("%s: resume (HEAD): bad Upload-Length %q", c.name(), l)
		}
	}
	return off, length, nil
}

// Asset GETs an asset's JSON, indented, from Roughy's assets API next to
// the endpoint (".../api/v1/assets/upload-resumable" →
// ".../api/v1/assets/{id}"). It returns nil when the endpoint is not
// Roughy's.
func (c *Client) Asset(ctx context.Context, id string) ([]byte, error) {
	base, ok := strings.CutSuffix(strings.TrimRight(c.Endpoint, "/"), "/upload-resumable")
	if !ok {
		return nil, nil
	}
	req, err := c.NewRequest(ctx, http.MethodGet, base+"/"+url.PathEscape(id), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Del("Tus-Resumable")
	_, body, err := c.send(req, "get asset", http.StatusOK)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if json.Indent(&out, body, "", "  ") != nil {
		return body, nil
	}
	return out.Bytes(), nil
}
