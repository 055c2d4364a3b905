package s3e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// reply is an HTTP response with its body read.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r reply) String() string {
	body := string(r.Body)
	if len(body) > 300 {
		body = body[:300] + "…"
	}
	return fmt.Sprintf("%d %s", r.Status, body)
}

// client speaks TUS and the assets API to one roughy as one account.
type client struct {
	t    *testing.T
	base string
	key  string
	hc   *http.Client
}

func newClient(t *testing.T, r *roughy, key string) *client {
	return &client{t: t, base: r.URL, key: key, hc: &http.Client{
		Timeout:   httpTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true},
	}}
}

// do sends one request; body may be nil. Transport errors are returned,
// HTTP statuses are not errors.
func (c *client) do(ctx context.Context, method, u string, body []byte, hdr map[string]string) (reply, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return reply{}, err
	}
	if c.key != "" { // none: a direct upload URL's client
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: read body: %w", method, u, err)
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// must is do that fails the test on a transport error.
func (c *client) must(ctx context.Context, method, u string, body []byte, hdr map[string]string) reply {
	c.t.Helper()
	r, err := c.do(ctx, method, u, body, hdr)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, u, err)
	}
	return r
}

// encodeMetadata renders Upload-Metadata with sorted keys.
func encodeMetadata(md map[string]string) string {
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + base64.StdEncoding.EncodeToString([]byte(md[k]))
	}
	return strings.Join(parts, ",")
}

// videoMD is the metadata of a plain video upload.
func videoMD(contentType string) map[string]string {
	return map[string]string{"type": "video", "content_type": contentType, "filename": "clip.mp4"}
}

// create POSTs a new upload of length bytes and returns its Location and
// id (the last path element).
func (c *client) create(ctx context.Context, length int64, md map[string]string, hdr map[string]string) (loc, id string) {
	c.t.Helper()
	h := map[string]string{"Upload-Length": fmt.Sprint(length)}
	if md != nil {
		h["Upload-Metadata"] = encodeMetadata(md)
	}
	for k, v := range hdr {
		h[k] = v
	}
	r := c.must(ctx, http.MethodPost, c.base+tusPath, nil, h)
	if r.Status != http.StatusCreated {
		c.t.Fatalf("POST create: %v, want 201", r)
	}
	loc = r.Header.Get("Location")
	u, err := url.Parse(loc)
	if err != nil || !u.IsAbs() {
		c.t.Fatalf("POST create: Location %q is not an absolute URL", loc)
	}
	return loc, loc[strings.LastIndexByte(loc, '/')+1:]
}

// patch sends one chunk at offset with extra headers.
func (c *client) patch(ctx context.Context, loc string, offset int64, chunk []byte, hdr map[string]string) (reply, error) {
	h := map[string]string{
		"Content-Type":  "application/offset+octet-stream",
		"Upload-Offset": fmt.Sprint(offset),
	}
	for k, v := range hdr {
		h[k] = v
	}
	return c.do(ctx, http.MethodPatch, loc, chunk, h)
}

// patchOK sends one chunk and fails unless it answers 204 with
// Upload-Offset offset+len(chunk).
func (c *client) patchOK(ctx context.Context, loc string, offset int64, chunk []byte) int64 {
	c.t.Helper()
	r, err := c.patch(ctx, loc, offset, chunk, nil)
	if err != nil {
		c.t.Fatalf("PATCH at %d (%d bytes): %v", offset, len(chunk), err)
	}
	if r.Status != http.StatusNoContent {
		c.t.Fatalf("PATCH at %d (%d bytes): %v, want 204", offset, len(chunk), r)
	}
	got, err := offsetOf(r.Header)
	if err != nil {
		c.t.Fatalf("PATCH at %d: 204 without Upload-Offset: %v", offset, err)
	}
	if want := offset + int64(len(chunk)); got != want {
		c.t.Fatalf("PATCH at %d (%d bytes): Upload-Offset %d, want %d", offset, len(chunk), got, want)
	}
	return got
}

// head returns HEAD's status and Upload-Offset (-1 when absent).
func (c *client) head(ctx context.Context, loc string) (int, int64) {
	c.t.Helper()
	r := c.must(ctx, http.MethodHead, loc, nil, nil)
	off, _ := offsetOf(r.Header)
	return r.Status, off
}

// headOffset fails unless HEAD answers 200 and returns the offset.
func (c *client) headOffset(ctx context.Context, loc string) int64 {
	c.t.Helper()
	st, off := c.head(ctx, loc)
	if st != http.StatusOK || off < 0 {
		c.t.Fatalf("HEAD %s: status %d offset %d, want 200 with an offset", loc, st, off)
	}
	return off
}

// finish uploads src[offset:] in chunks of at most chunk bytes. A 423
// (the lease of a dropped request not yet released), a 409 (that request
// committed after our HEAD) or a 503 is retried from HEAD's offset for up
// to retryFor.
func (c *client) finish(ctx context.Context, loc string, src []byte, offset int64, chunk int, retryFor time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(retryFor)
	for offset < int64(len(src)) {
		end := min(offset+int64(chunk), int64(len(src)))
		r, err := c.patch(ctx, loc, offset, src[offset:end], nil)
		if err == nil && r.Status == http.StatusNoContent {
			got, oerr := offsetOf(r.Header)
			if oerr != nil || got != end {
				c.t.Fatalf("PATCH at %d: Upload-Offset %d (%v), want %d", offset, got, oerr, end)
			}
			offset = end
			continue
		}
		retry := err == nil && (r.Status == http.StatusLocked || r.Status == http.StatusConflict ||
			r.Status == http.StatusServiceUnavailable)
		if !retry || time.Now().After(deadline) {
			c.t.Fatalf("PATCH at %d (%d bytes): %v %v", offset, end-offset, r, err)
		}
		time.Sleep(200 * time.Millisecond)
		offset = c.headOffset(ctx, loc)
	}
}

// assetJSON is the part of GET /api/v1/assets/{id} the tests check.
type assetJSON struct {
	ID          string `json:"id"`
	Type        string `json:"type"`
	State       string `json:"state"`
	SizeBytes   *int64 `json:"size_bytes"`
	ContentType string `json:"content_type"`
	SHA256      string `json:"sha256"`
	DownloadURL string `json:"download_url"`
}

// asset GETs an asset and returns the status and, on 200, its JSON.
func (c *client) asset(ctx context.Context, id string) (int, assetJSON) {
	c.t.Helper()
	r := c.must(ctx, http.MethodGet, c.base+assetsPath+id, nil, nil)
	var a assetJSON
	if r.Status == http.StatusOK {
		if err := json.Unmarshal(r.Body, &a); err != nil {
			c.t.Fatalf("GET asset %s: %v in %s", id, err, r.Body)
		}
	}
	return r.Status, a
}

// checkReady fails unless the asset is ready with src's size and SHA-256,
// and its download_url is a presigned URL of the gateway that returns src.
func (c *client) checkReady(ctx context.Context, gw *gateway, id string, src []byte, contentType string) {
	c.t.Helper()
	st, a := c.asset(ctx, id)
	if st != http.StatusOK {
		c.t.Fatalf("GET asset %s: status %d, want 200", id, st)
	}
	sum := sha256.Sum256(src)
	if a.State != "ready" {
		c.t.Errorf("asset state %q, want ready", a.State)
	}
	if a.SizeBytes == nil || *a.SizeBytes != int64(len(src)) {
		c.t.Errorf("asset size_bytes %v, want %d", a.SizeBytes, len(src))
	}
	if want := hex.EncodeToString(sum[:]); a.SHA256 != want {
		c.t.Errorf("asset sha256 %q, want %q", a.SHA256, want)
	}
	if contentType != "" && a.ContentType != contentType {
		c.t.Errorf("asset content_type %q, want %q", a.ContentType, contentType)
	}
	u, err := url.Parse(a.DownloadURL)
	if err != nil || a.DownloadURL == "" {
		c.t.Fatalf("download_url %q: %v", a.DownloadURL, err)
	}
	if gu, _ := url.Parse(gw.Endpoint); u.Host != gu.Host {
		c.t.Errorf("download_url host %q, want the S3 endpoint %q (presigned S3 GET)", u.Host, gu.Host)
	}
	if u.Query().Get("X-Amz-Signature") == "" || u.Query().Get("X-Amz-Expires") == "" {
		c.t.Errorf("download_url %q has no X-Amz-Signature/X-Amz-Expires: not presigned", a.DownloadURL)
	}
	// No Authorization header: the signature in the URL must be enough.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.DownloadURL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("GET download_url: %v", err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("GET download_url: read: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("GET download_url: %d %.300s", resp.StatusCode, got)
	}
	checkBytes(c.t, "download_url body", got, src)
}

// randomBytes returns n pseudo-random bytes from seed (logged, so a failing
// run can be repeated).
func randomBytes(t *testing.T, n int, seed uint64) []byte {
	t.Helper()
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	_, _ = r.Read(b)
	return b
}

// sha256Header is an Upload-Checksum value for b.
func sha256Header(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256 " + base64.StdEncoding.EncodeToString(s[:])
}

// sha1Header is an Upload-Checksum value for b with SHA-1.
func sha1Header(b []byte) string {
	s := sha1.Sum(b)
	return "sha1 " + base64.StdEncoding.EncodeToString(s[:])
}

// objectKey is where roughy stores an upload's bytes.
func objectKey(id string) string { return "uploads/" + id }

// rawPatch writes a PATCH by hand on its own TCP connection: headers that
// announce size bytes, then only the bytes it is given.
type rawPatch struct {
	conn net.Conn
}

// openRawPatch dials loc's host and sends a PATCH's headers announcing a
// body of size bytes at offset.
func (c *client) openRawPatch(loc string, offset, size int64) *rawPatch {
	c.t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		c.t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		c.t.Fatalf("dial %s: %v", u.Host, err)
	}
	c.t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(httpTimeout))
	hdr := fmt.Sprintf("PATCH %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
		"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"+
		"Upload-Offset: %d\r\nContent-Length: %d\r\n\r\n", u.RequestURI(), u.Host, c.key, offset, size)
	if _, err := io.WriteString(conn, hdr); err != nil {
		c.t.Fatalf("raw PATCH headers: %v", err)
	}
	return &rawPatch{conn: conn}
}

// write sends body bytes.
func (p *rawPatch) write(t *testing.T, b []byte) {
	t.Helper()
	if _, err := p.conn.Write(b); err != nil {
		t.Fatalf("raw PATCH body: %v", err)
	}
}

// rawExchange sends a whole PATCH on its own connection while reading the
// reply at the same time, as a browser does: a server that answers before
// it read the body (423, 409) and then closes is seen answering, where
// net/http's client may report only its failed body write. writeErr is
// that failure, if any; err is set when no reply could be read.
func (c *client) rawExchange(loc string, offset int64, body []byte) (r reply, writeErr, err error) {
	c.t.Helper()
	p := c.openRawPatch(loc, offset, int64(len(body)))
	defer p.conn.Close()
	wrote := make(chan error, 1)
	go func() {
		_, werr := p.conn.Write(body)
		wrote <- werr
	}()
	resp, err := http.ReadResponse(bufio.NewReader(p.conn), nil)
	if err == nil {
		b, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		r, err = reply{Status: resp.StatusCode, Header: resp.Header, Body: b}, rerr
	}
	p.conn.Close() // unblocks the writer if the server stopped reading
	return r, <-wrote, err
}
