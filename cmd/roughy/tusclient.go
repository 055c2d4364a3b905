package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// tusClient speaks the client side of TUS 1.0.0 with the creation and
// checksum extensions, plus Roughy's assets API.
type tusClient struct {
	hc  *http.Client
	key string
	// stall cancels a PATCH whose body made no progress for this long.
	stall time.Duration
}

func newTUSClient(key string) *tusClient {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute, // after the body was sent: covers fsync / S3 part upload
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
	}
	return &tusClient{hc: &http.Client{Transport: tr}, key: key, stall: time.Minute}
}

// httpError is a non-success answer of the server.
type httpError struct {
	op         string
	status     int
	body       string
	retryAfter time.Duration
}

func (e *httpError) Error() string {
	msg := strings.TrimSpace(e.body)
	var j struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(msg), &j) == nil && j.Error.Code != "" {
		msg = j.Error.Code + ": " + j.Error.Message
	}
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	return fmt.Sprintf("roughy: %s: HTTP %d %s", e.op, e.status, msg)
}

// errPermanent marks client-side failures that no retry can fix.
var errPermanent = errors.New("roughy: permanent failure")

// retryable reports whether a request that failed with err may succeed if
// tried again: network errors, 5xx, 409 (offset moved), 423 (locked), 429
// and 460 (checksum mismatch: the bytes were damaged on the way).
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, errPermanent) {
		return false
	}
	if he, ok := errors.AsType[*httpError](err); ok {
		switch {
		case he.status >= 500, he.status == http.StatusConflict, he.status == http.StatusLocked,
			he.status == http.StatusTooManyRequests, he.status == 460:
			return true
		}
		return false
	}
	return true // transport errors: refused, reset, timeouts
}

// gone reports whether the upload no longer exists for us, so that a
// stored upload URL should be forgotten and the upload started over.
func gone(err error) bool {
	he, ok := errors.AsType[*httpError](err)
	return ok && (he.status == http.StatusNotFound || he.status == http.StatusGone || he.status == http.StatusForbidden)
}

func (c *tusClient) newRequest(ctx context.Context, method, u string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("roughy: %s %s: %w", method, u, err)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	return req, nil
}

// send does req and turns any status other than want into an httpError.
// The body of a successful response is returned (up to 1 MiB).
func (c *tusClient) send(req *http.Request, op string, want int) (*http.Response, []byte, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("roughy: %s: %w", op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		he := &httpError{op: op, status: resp.StatusCode, body: string(body)}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			he.retryAfter = time.Duration(s) * time.Second
		}
		return resp, body, he
	}
	if err != nil {
		return nil, nil, fmt.Errorf("roughy: %s: read body: %w", op, err)
	}
	return resp, body, nil
}

// encodeMetadata builds an Upload-Metadata header from ordered pairs.
func encodeMetadata(pairs [][2]string) string {
	var b strings.Builder
	for _, p := range pairs {
		if p[1] == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p[0])
		b.WriteByte(' ')
		b.WriteString(base64.StdEncoding.EncodeToString([]byte(p[1])))
	}
	return b.String()
}

// created is the answer to a creation POST.
type created struct {
	URL     string
	AssetID string
}

// create POSTs a new upload of size bytes and returns its absolute URL and
// asset id (from the JSON body, else the URL's last segment).
func (c *tusClient) create(ctx context.Context, endpoint string, size int64, metadata string) (created, error) {
	req, err := c.newRequest(ctx, http.MethodPost, endpoint, nil)
	if err != nil {
		return created{}, err
	}
	req.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
	if metadata != "" {
		req.Header.Set("Upload-Metadata", metadata)
	}
	resp, body, err := c.send(req, "create upload", http.StatusCreated)
	if err != nil {
		return created{}, err
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return created{}, errors.New("roughy: create upload: no Location in the answer")
	}
	base, err := url.Parse(endpoint)
	if err != nil {
		return created{}, fmt.Errorf("roughy: endpoint: %w", err)
	}
	ref, err := url.Parse(loc)
	if err != nil {
		return created{}, fmt.Errorf("roughy: create upload: bad Location %q: %w", loc, err)
	}
	abs := base.ResolveReference(ref).String()
	var j struct {
		SessionID string `json:"session_id"`
		Asset     struct {
			ID string `json:"id"`
		} `json:"asset"`
	}
	id := ""
	if json.Unmarshal(body, &j) == nil && j.Asset.ID != "" {
		id = j.Asset.ID
	} else {
		id = abs[strings.LastIndexByte(strings.TrimRight(abs, "/"), '/')+1:]
	}
	return created{URL: abs, AssetID: id}, nil
}

// offset HEADs the upload and returns its offset and length (-1 when
// deferred).
func (c *tusClient) offset(ctx context.Context, uploadURL string) (int64, int64, error) {
	req, err := c.newRequest(ctx, http.MethodHead, uploadURL, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, _, err := c.send(req, "resume (HEAD)", http.StatusOK)
	if err != nil {
		return 0, 0, err
	}
	off, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || off < 0 {
		return 0, 0, fmt.Errorf("roughy: resume (HEAD): bad Upload-Offset %q", resp.Header.Get("Upload-Offset"))
	}
	length := int64(-1)
	if l := resp.Header.Get("Upload-Length"); l != "" {
		if length, err = strconv.ParseInt(l, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("roughy: resume (HEAD): bad Upload-Length %q", l)
		}
	}
	return off, length, nil
}

// patch sends bytes [off, off+n) of src with their SHA-256 as
// Upload-Checksum and returns the server's new offset. sent is told how
// many bytes of the body went out so far.
func (c *tusClient) patch(ctx context.Context, uploadURL string, src io.ReaderAt, off, n int64, checksum bool, sent func(int64)) (int64, error) {
	var sum string
	if checksum {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(src, off, n)); err != nil {
			return 0, fmt.Errorf("roughy: read file: %w", err)
		}
		sum = "sha256 " + base64.StdEncoding.EncodeToString(h.Sum(nil))
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errStalled := fmt.Errorf("roughy: upload stalled: no progress for %s", c.stall)
	watchdog := time.AfterFunc(c.stall, func() { cancel(errStalled) })
	defer watchdog.Stop()
	body := &countingReader{r: io.NewSectionReader(src, off, n), fn: func(total int64) {
		if total >= n {
			watchdog.Stop() // the response header timeout takes over
		} else {
			watchdog.Reset(c.stall)
		}
		sent(total)
	}}

	req, err := c.newRequest(ctx, http.MethodPatch, uploadURL, body)
	if err != nil {
		return 0, err
	}
	req.ContentLength = n
	if n == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", strconv.FormatInt(off, 10))
	if sum != "" {
		req.Header.Set("Upload-Checksum", sum)
	}
	resp, _, err := c.send(req, fmt.Sprintf("PATCH at %d", off), http.StatusNoContent)
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
			return 0, cause
		}
		return 0, err
	}
	newOff, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || newOff < off || newOff > off+n {
		return 0, fmt.Errorf("roughy: PATCH at %d: bad Upload-Offset %q in the answer", off, resp.Header.Get("Upload-Offset"))
	}
	return newOff, nil
}

// asset GETs the asset's JSON from the assets API next to endpoint
// (".../api/v1/assets/upload-resumable" → ".../api/v1/assets/{id}"). It
// returns "" when the endpoint is not Roughy's.
func (c *tusClient) asset(ctx context.Context, endpoint, id string) ([]byte, error) {
	base, ok := strings.CutSuffix(strings.TrimRight(endpoint, "/"), "/upload-resumable")
	if !ok {
		return nil, nil
	}
	req, err := c.newRequest(ctx, http.MethodGet, base+"/"+url.PathEscape(id), nil)
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
