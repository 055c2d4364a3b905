package proxy

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestOptionsDiscovery(t *testing.T) {
	e := newEnv(t, nil, nil)
	r := e.do("OPTIONS", uploadsPath, nil, nil)
	if r.status != http.StatusNoContent {
		t.Fatalf("OPTIONS status %d, want 204", r.status)
	}
	want := map[string]string{
		"Tus-Resumable": "1.0.0", "Tus-Version": "1.0.0", "Tus-Max-Size": "53687091200",
		"Tus-Extension":          "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration,concatenation",
		"Tus-Checksum-Algorithm": "sha256,sha1,md5",
	}
	for k, v := range want {
		if got := r.h.Get(k); got != v {
			t.Errorf("OPTIONS %s = %q, want %q", k, got, v)
		}
	}
	// On an upload URL too.
	if r := e.do("OPTIONS", uploadsPath+"/whatever", nil, nil); r.status != http.StatusNoContent || r.h.Get("Tus-Version") != "1.0.0" {
		t.Errorf("OPTIONS on upload URL: %d %q, want 204 with Tus-Version", r.status, r.h.Get("Tus-Version"))
	}
}

func TestUploadHappyPath(t *testing.T) {
	e := newEnv(t, nil, nil)
	data := randomBytes(t, 3<<20+17)
	c := e.create("acme", int64(len(data)))
	if c.SessionID == "" || c.Asset == nil || c.Asset.ID != c.SessionID {
		t.Fatalf("POST body %s: want session_id equal to asset.id", c.body)
	}
	if want := e.url + uploadsPath + "/" + c.SessionID; c.Location != want {
		t.Errorf("Location = %q, want %q", c.Location, want)
	}
	if _, err := time.Parse(httpTime, c.h.Get("Upload-Expires")); err != nil {
		t.Errorf("Upload-Expires %q: %v", c.h.Get("Upload-Expires"), err)
	}
	if c.h.Get("Upload-Offset") != "" {
		t.Errorf("POST without data has Upload-Offset %q", c.h.Get("Upload-Offset"))
	}
	if ct := c.h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("POST Content-Type = %q, want application/json", ct)
	}
	a := c.Asset
	if a.State != "uploading" || a.Type != "video" || a.SizeBytes == nil || *a.SizeBytes != int64(len(data)) ||
		a.ContentType == nil || *a.ContentType != "video/mp4" || a.Filename == nil || *a.Filename != "clip.mp4" ||
		a.DurationSeconds != nil || a.SHA256 != "" || a.DownloadURL != "" {
		t.Errorf("POST asset = %s, want uploading video of %d bytes without sha256/download_url", c.body, len(data))
	}
	if _, err := time.Parse(time.RFC3339, a.CreatedAt); err != nil {
		t.Errorf("created_at %q: %v", a.CreatedAt, err)
	}

	chunk := 1 << 20
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		r := e.patch("acme", c.Location, int64(off), data[off:end])
		if r.status != http.StatusNoContent || r.h.Get("Upload-Offset") != strconv.Itoa(end) {
			t.Fatalf("PATCH at %d: %d offset %q body %s; want 204 offset %d", off, r.status, r.h.Get("Upload-Offset"), r.body, end)
		}
		if r.h.Get("Tus-Resumable") != "1.0.0" {
			t.Errorf("PATCH response without Tus-Resumable")
		}
		if off == 0 {
			h := e.head("acme", c.Location)
			if h.status != http.StatusOK || h.h.Get("Upload-Offset") != strconv.Itoa(end) ||
				h.h.Get("Upload-Length") != strconv.Itoa(len(data)) || h.h.Get("Cache-Control") != "no-store" ||
				h.h.Get("Upload-Metadata") == "" || h.h.Get("Upload-Expires") == "" {
				t.Errorf("HEAD = %d %v, want 200 with offset %d, length, metadata, expiry, no-store", h.status, h.h, end)
			}
			if _, a := e.getAsset("acme", c.SessionID); a.State != "uploading" {
				t.Errorf("asset state mid-upload = %q, want uploading", a.State)
			}
		}
	}
	if got := e.stored(c.SessionID); !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes differ from the %d sent", len(got), len(data))
	}
	r, a2 := e.getAsset("acme", c.SessionID)
	if r.status != http.StatusOK || a2.State != "ready" || a2.SHA256 != sha256Hex(data) || a2.DownloadURL == "" ||
		a2.SizeBytes == nil || *a2.SizeBytes != int64(len(data)) {
		t.Fatalf("GET asset after upload = %d %s; want ready, sha256 %s, download_url", r.status, r.body, sha256Hex(data))
	}
	if !bytes.Contains(r.body, []byte(`"duration_seconds":null`)) {
		t.Errorf("asset JSON %s: duration_seconds should be null before probing", r.body)
	}
	h := e.head("acme", c.Location)
	if h.status != http.StatusOK || h.h.Get("Upload-Offset") != strconv.Itoa(len(data)) {
		t.Errorf("HEAD after completion = %d offset %q", h.status, h.h.Get("Upload-Offset"))
	}

	// Download: whole, ranges, HEAD, tampered and expired tokens.
	if !strings.HasPrefix(a2.DownloadURL, e.url+"/sign/assets/uploads/"+c.SessionID+"?token=") {
		t.Fatalf("download_url = %q, want a URL of this server", a2.DownloadURL)
	}
	d := e.do("GET", a2.DownloadURL, nil, nil)
	if d.status != http.StatusOK || !bytes.Equal(d.body, data) || d.h.Get("Content-Type") != "video/mp4" || d.h.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("download = %d, %d bytes, type %q; want 200 with the data", d.status, len(d.body), d.h.Get("Content-Type"))
	}
	d = e.do("GET", a2.DownloadURL, hdr("Range", "bytes=100-199"), nil)
	if d.status != http.StatusPartialContent || !bytes.Equal(d.body, data[100:200]) ||
		d.h.Get("Content-Range") != "bytes 100-199/"+strconv.Itoa(len(data)) {
		t.Errorf("range download = %d %q, %d bytes; want 206 bytes 100-199", d.status, d.h.Get("Content-Range"), len(d.body))
	}
	d = e.do("GET", a2.DownloadURL, hdr("Range", "bytes=-5"), nil)
	if d.status != http.StatusPartialContent || !bytes.Equal(d.body, data[len(data)-5:]) {
		t.Errorf("suffix range = %d, %d bytes; want 206 last 5", d.status, len(d.body))
	}
	d = e.do("GET", a2.DownloadURL, hdr("Range", "bytes="+strconv.Itoa(len(data))+"-"), nil)
	if d.status != http.StatusRequestedRangeNotSatisfiable || d.h.Get("Content-Range") != "bytes */"+strconv.Itoa(len(data)) {
		t.Errorf("unsatisfiable range = %d %q, want 416 bytes */%d", d.status, d.h.Get("Content-Range"), len(data))
	}
	d = e.do("HEAD", a2.DownloadURL, nil, nil)
	if d.status != http.StatusOK || d.h.Get("Content-Length") != strconv.Itoa(len(data)) {
		t.Errorf("HEAD download = %d length %q, want 200 %d", d.status, d.h.Get("Content-Length"), len(data))
	}
	tampered := strings.Replace(a2.DownloadURL, "token=", "token=1", 1)
	if d := e.do("GET", tampered, nil, nil); d.status != http.StatusForbidden {
		t.Errorf("tampered token: %d, want 403", d.status)
	}
	expired := e.url + downloadPath + c.SessionID + "?token=" + e.srv.assets.signDownload(c.SessionID, time.Now().Add(-time.Second))
	if d := e.do("GET", expired, nil, nil); d.status != http.StatusForbidden {
		t.Errorf("expired token: %d, want 403", d.status)
	}
	other := e.url + downloadPath + "019deafa-0000-7000-8000-000000000001?" + strings.SplitN(a2.DownloadURL, "?", 2)[1]
	if d := e.do("GET", other, nil, nil); d.status != http.StatusForbidden {
		t.Errorf("token of another asset: %d, want 403", d.status)
	}
}

func TestChecksum(t *testing.T) {
	e := newEnv(t, nil, nil)
	data := randomBytes(t, 300<<10)
	c := e.create("acme", int64(len(data)))
	parts := [][]byte{data[:100<<10], data[100<<10 : 200<<10], data[200<<10:]}
	sums := []func([]byte) string{
		func(b []byte) string {
			s := sha256.Sum256(b)
			return "sha256 " + base64.StdEncoding.EncodeToString(s[:])
		},
		func(b []byte) string { s := sha1.Sum(b); return "sha1 " + base64.StdEncoding.EncodeToString(s[:]) },
		func(b []byte) string { s := md5.Sum(b); return "md5 " + base64.StdEncoding.EncodeToString(s[:]) },
	}
	off := int64(0)
	for i, p := range parts {
		// A wrong digest first: 460, the offset stays.
		bad := append([]byte{}, p...)
		bad[0] ^= 0xff
		r := e.patch("acme", c.Location, off, bad, "Upload-Checksum", sums[i](p))
		if r.status != StatusChecksumMismatch || r.errorCode() != "checksum_mismatch" {
			t.Fatalf("PATCH with wrong %s digest: %d %s, want 460", strings.Fields(sums[i](p))[0], r.status, r.body)
		}
		if h := e.head("acme", c.Location); h.h.Get("Upload-Offset") != strconv.FormatInt(off, 10) {
			t.Fatalf("offset after 460 = %q, want %d", h.h.Get("Upload-Offset"), off)
		}
		r = e.patch("acme", c.Location, off, p, "Upload-Checksum", sums[i](p))
		off += int64(len(p))
		if r.status != http.StatusNoContent || r.h.Get("Upload-Offset") != strconv.FormatInt(off, 10) {
			t.Fatalf("PATCH with right digest: %d %q %s", r.status, r.h.Get("Upload-Offset"), r.body)
		}
	}
	if _, a := e.getAsset("acme", c.SessionID); a.State != "ready" || a.SHA256 != sha256Hex(data) {
		t.Errorf("asset = %+v, want ready with sha256 %s", a, sha256Hex(data))
	}
	if got := e.stored(c.SessionID); !bytes.Equal(got, data) {
		t.Errorf("stored bytes differ from sent")
	}
	e.wantReady("acme", c.SessionID, data)
}

func TestDeferLength(t *testing.T) {
	e := newEnv(t, nil, nil)
	data := randomBytes(t, 200<<10)
	c := e.create("acme", -1)
	if c.Asset.SizeBytes != nil || !bytes.Contains(c.body, []byte(`"size_bytes":null`)) {
		t.Errorf("deferred asset %s: size_bytes should be null", c.body)
	}
	h := e.head("acme", c.Location)
	if h.h.Get("Upload-Defer-Length") != "1" || h.h.Get("Upload-Length") != "" {
		t.Errorf("HEAD of deferred upload: Defer-Length %q Length %q, want 1 and none", h.h.Get("Upload-Defer-Length"), h.h.Get("Upload-Length"))
	}
	if r := e.patch("acme", c.Location, 0, data[:100<<10]); r.status != http.StatusNoContent {
		t.Fatalf("first PATCH: %d %s", r.status, r.body)
	}
	// A length below what is stored is refused.
	if r := e.patch("acme", c.Location, 100<<10, nil, "Upload-Length", "10"); r.status != http.StatusRequestEntityTooLarge && r.status != http.StatusBadRequest {
		t.Errorf("Upload-Length below the offset: %d, want 400 or 413", r.status)
	}
	r := e.patch("acme", c.Location, 100<<10, data[100<<10:], "Upload-Length", strconv.Itoa(len(data)))
	if r.status != http.StatusNoContent || r.h.Get("Upload-Offset") != strconv.Itoa(len(data)) {
		t.Fatalf("last PATCH with Upload-Length: %d %s", r.status, r.body)
	}
	h = e.head("acme", c.Location)
	if h.h.Get("Upload-Length") != strconv.Itoa(len(data)) || h.h.Get("Upload-Defer-Length") != "" {
		t.Errorf("HEAD after length known: Length %q Defer %q", h.h.Get("Upload-Length"), h.h.Get("Upload-Defer-Length"))
	}
	if _, a := e.getAsset("acme", c.SessionID); a.State != "ready" || a.SizeBytes == nil || *a.SizeBytes != int64(len(data)) || a.SHA256 != sha256Hex(data) {
		t.Errorf("asset = %+v, want ready with size and sha256", a)
	}
	e.wantReady("acme", c.SessionID, data)
}

func TestCreationWithUpload(t *testing.T) {
	e := newEnv(t, nil, nil)
	data := randomBytes(t, 100<<10)
	h := e.tusHdr("acme", "Upload-Length", strconv.Itoa(len(data)), "Upload-Metadata", md("type", "audio", "content_type", "audio/wav"),
		"Content-Type", "application/offset+octet-stream")
	r := e.do("POST", uploadsPath, h, data[:40<<10])
	if r.status != http.StatusCreated || r.h.Get("Upload-Offset") != strconv.Itoa(40<<10) {
		t.Fatalf("POST with data: %d offset %q %s; want 201 offset %d", r.status, r.h.Get("Upload-Offset"), r.body, 40<<10)
	}
	loc := r.h.Get("Location")
	if r := e.patch("acme", loc, 40<<10, data[40<<10:]); r.status != http.StatusNoContent {
		t.Fatalf("PATCH rest: %d %s", r.status, r.body)
	}
	id := loc[strings.LastIndex(loc, "/")+1:]
	if _, a := e.getAsset("acme", id); a.State != "ready" || a.Type != "audio" || a.SHA256 != sha256Hex(data) {
		t.Errorf("asset = %+v", a)
	}
	e.wantReady("acme", id, data)

	// The whole file in the POST: the 201 already shows a ready asset.
	r = e.do("POST", uploadsPath, h, data)
	if r.status != http.StatusCreated || r.h.Get("Upload-Offset") != strconv.Itoa(len(data)) ||
		!bytes.Contains(r.body, []byte(`"state":"ready"`)) || !bytes.Contains(r.body, []byte(sha256Hex(data))) {
		t.Errorf("POST with all data: %d %q %s; want 201 with a ready asset", r.status, r.h.Get("Upload-Offset"), r.body)
	} else {
		loc := r.h.Get("Location")
		e.wantReady("acme", loc[strings.LastIndex(loc, "/")+1:], data)
	}
	// With a checksum that does not match: 460.
	sum := sha256.Sum256([]byte("other"))
	h.Set("Upload-Checksum", "sha256 "+base64.StdEncoding.EncodeToString(sum[:]))
	if r := e.do("POST", uploadsPath, h, data); r.status != StatusChecksumMismatch {
		t.Errorf("POST with data and wrong checksum: %d, want 460", r.status)
	}
}

func TestZeroLengthUpload(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := e.create("acme", 0)
	if c.Asset.State != "ready" || c.Asset.SHA256 != sha256Hex(nil) {
		t.Errorf("empty upload asset = %s, want ready with the empty sha256", c.body)
	}
	if h := e.head("acme", c.Location); h.status != http.StatusOK || h.h.Get("Upload-Offset") != "0" {
		t.Errorf("HEAD of empty upload = %d %q", h.status, h.h.Get("Upload-Offset"))
	}
	e.wantReady("acme", c.SessionID, []byte{})
}

func TestConcatenation(t *testing.T) {
	e := newEnv(t, nil, nil)
	data := randomBytes(t, 250<<10)
	split := 100 << 10
	p1 := e.create("acme", int64(split), "Upload-Concat", "partial")
	p2 := e.create("acme", int64(len(data)-split), "Upload-Concat", "partial")
	if p1.Asset != nil {
		t.Errorf("partial upload has an asset: %s", p1.body)
	}
	if h := e.head("acme", p1.Location); h.h.Get("Upload-Concat") != "partial" {
		t.Errorf("HEAD partial Upload-Concat = %q", h.h.Get("Upload-Concat"))
	}
	if r := e.patch("acme", p1.Location, 0, data[:split]); r.status != http.StatusNoContent {
		t.Fatalf("PATCH partial 1: %d %s", r.status, r.body)
	}
	final := func(account string) resp {
		// tus-js-client lists absolute URLs; paths are accepted too.
		return e.do("POST", uploadsPath, e.tusHdr(account, "Upload-Concat", "final;"+p1.Location+" "+uploadsPath+"/"+p2.SessionID,
			"Upload-Metadata", md("type", "video", "filename", "joined.mp4")), nil)
	}
	if r := final("acme"); r.status != http.StatusBadRequest || r.errorCode() != "invalid_concat" {
		t.Errorf("final with an unfinished partial: %d %s, want 400 invalid_concat", r.status, r.body)
	}
	if r := e.patch("acme", p2.Location, 0, data[split:]); r.status != http.StatusNoContent {
		t.Fatalf("PATCH partial 2: %d %s", r.status, r.body)
	}
	if r := final("globex"); r.status != http.StatusBadRequest {
		t.Errorf("final over another account's partials: %d, want 400", r.status)
	}
	r := final("acme")
	if r.status != http.StatusCreated || !bytes.Contains(r.body, []byte(`"state":"ready"`)) || !bytes.Contains(r.body, []byte(sha256Hex(data))) {
		t.Fatalf("final POST: %d %s; want 201 with a ready asset of sha256 %s", r.status, r.body, sha256Hex(data))
	}
	loc := r.h.Get("Location")
	id := loc[strings.LastIndex(loc, "/")+1:]
	if got := e.stored(id); !bytes.Equal(got, data) {
		t.Errorf("final object differs from the partials")
	}
	e.wantReady("acme", id, data)
	h := e.head("acme", loc)
	// Upload-Concat as the POST sent it (an absolute URL and a path).
	if want := "final;" + p1.Location + " " + uploadsPath + "/" + p2.SessionID; h.h.Get("Upload-Concat") != want || h.h.Get("Upload-Offset") != strconv.Itoa(len(data)) {
		t.Errorf("HEAD final: Upload-Concat %q offset %q; want %q, %d", h.h.Get("Upload-Concat"), h.h.Get("Upload-Offset"), want, len(data))
	}
	if r := e.patch("acme", loc, int64(len(data)), nil); r.status != http.StatusForbidden {
		t.Errorf("PATCH of a final upload: %d, want 403", r.status)
	}
	if r, _ := e.getAsset("acme", p1.SessionID); r.status != http.StatusNotFound {
		t.Errorf("GET asset of a partial: %d, want 404", r.status)
	}
}

func TestDeleteIsIdempotent(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := e.create("acme", 100)
	e.patch("acme", c.Location, 0, make([]byte, 50))
	for i := range 2 {
		if r := e.do("DELETE", c.Location, e.tusHdr("acme"), nil); r.status != http.StatusNoContent {
			t.Errorf("DELETE #%d: %d %s, want 204", i+1, r.status, r.body)
		}
	}
	if h := e.head("acme", c.Location); h.status != http.StatusNotFound {
		t.Errorf("HEAD after DELETE: %d, want 404", h.status)
	}
	if r, _ := e.getAsset("acme", c.SessionID); r.status != http.StatusNotFound {
		t.Errorf("GET asset after DELETE: %d, want 404", r.status)
	}
	if r := e.patch("acme", c.Location, 50, make([]byte, 50)); r.status != http.StatusNotFound {
		t.Errorf("PATCH after DELETE: %d, want 404", r.status)
	}
	// The bytes are freed.
	if _, err := e.srv.pipe.Sink().Open(t.Context(), storageKey(c.SessionID)); err == nil {
		t.Errorf("stored bytes still there after DELETE")
	}
}

func TestMethodOverride(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := e.create("acme", 10)
	h := e.tusHdr("acme", "X-HTTP-Method-Override", "PATCH", "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream")
	if r := e.do("POST", c.Location, h, []byte("0123456789")); r.status != http.StatusNoContent || r.h.Get("Upload-Offset") != "10" {
		t.Errorf("POST overridden to PATCH: %d %q %s", r.status, r.h.Get("Upload-Offset"), r.body)
	}
	e.wantReady("acme", c.SessionID, []byte("0123456789"))
	if r := e.do("POST", c.Location, e.tusHdr("acme", "X-HTTP-Method-Override", "HEAD"), nil); r.status != http.StatusOK || r.h.Get("Upload-Offset") != "10" {
		t.Errorf("POST overridden to HEAD: %d %q", r.status, r.h.Get("Upload-Offset"))
	}
	if r := e.do("POST", c.Location, e.tusHdr("acme", "X-HTTP-Method-Override", "DELETE"), nil); r.status != http.StatusNoContent {
		t.Errorf("POST overridden to DELETE: %d", r.status)
	}
	if h := e.head("acme", c.Location); h.status != http.StatusNotFound {
		t.Errorf("HEAD after overridden DELETE: %d", h.status)
	}
}

func TestLocationHonoursProxyHeaders(t *testing.T) {
	e := newEnv(t, nil, nil)
	h := e.tusHdr("acme", "Upload-Length", "1", "Upload-Metadata", md("type", "video"),
		"X-Forwarded-Proto", "https", "X-Forwarded-Host", "uploads.example.com")
	r := e.do("POST", uploadsPath, h, nil)
	if loc := r.h.Get("Location"); !strings.HasPrefix(loc, "https://uploads.example.com"+uploadsPath+"/") {
		t.Errorf("Location behind a proxy = %q, want https://uploads.example.com/…", loc)
	}
	p := newEnv(t, func(c *Config) { c.PublicURL = "https://api.roughy.test/" }, nil)
	c := p.create("acme", 1, "X-Forwarded-Host", "ignored.example")
	if want := "https://api.roughy.test" + uploadsPath + "/" + c.SessionID; c.Location != want {
		t.Errorf("Location with --public-url = %q, want %q", c.Location, want)
	}
	p.patch("acme", p.url+uploadsPath+"/"+c.SessionID, 0, []byte("x"))
	a := p.wantReady("acme", c.SessionID, []byte("x"))
	if !strings.HasPrefix(a.DownloadURL, "https://api.roughy.test/sign/assets/uploads/") {
		t.Errorf("download_url with --public-url = %q", a.DownloadURL)
	}
}

func TestCORS(t *testing.T) {
	e := newEnv(t, nil, nil)
	origin := "https://app.example"
	pre := e.do("OPTIONS", uploadsPath, hdr("Origin", origin, "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "authorization,tus-resumable,upload-length,upload-metadata"), nil)
	if pre.status != http.StatusNoContent || pre.h.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(pre.h.Get("Access-Control-Allow-Methods"), "PATCH") ||
		!strings.Contains(pre.h.Get("Access-Control-Allow-Headers"), "Upload-Metadata") ||
		!strings.Contains(pre.h.Get("Access-Control-Allow-Headers"), "Authorization") ||
		pre.h.Get("Access-Control-Max-Age") == "" {
		t.Errorf("preflight = %d %v", pre.status, pre.h)
	}
	// Real responses expose the TUS headers, errors too.
	c := e.create("acme", 5, "Origin", origin)
	r := e.patch("acme", c.Location, 0, []byte("hello"), "Origin", origin)
	bad := e.patch("acme", c.Location, 3, []byte("x"), "Origin", origin)
	asset, _ := e.getAsset("acme", c.SessionID)
	_ = asset
	ga := e.do("GET", "/api/v1/assets/"+c.SessionID, hdr("Authorization", "Bearer "+e.keys["acme"], "Origin", origin), nil)
	for name, rr := range map[string]resp{"POST": c.resp, "PATCH": r, "PATCH 409": bad, "GET asset": ga} {
		if rr.h.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: Access-Control-Allow-Origin = %q", name, rr.h.Get("Access-Control-Allow-Origin"))
		}
		exp := rr.h.Get("Access-Control-Expose-Headers")
		for _, want := range []string{"Upload-Offset", "Location", "Upload-Length", "Tus-Resumable", "Upload-Metadata", "Upload-Expires"} {
			if !strings.Contains(exp, want) {
				t.Errorf("%s: Access-Control-Expose-Headers %q lacks %s", name, exp, want)
			}
		}
	}

	// Configured origins: others get no CORS headers.
	o := newEnv(t, func(c *Config) { c.CORSOrigins = []string{"https://ok.example"} }, nil)
	ok := o.do("OPTIONS", uploadsPath, hdr("Origin", "https://ok.example", "Access-Control-Request-Method", "PATCH"), nil)
	if ok.h.Get("Access-Control-Allow-Origin") != "https://ok.example" || !strings.Contains(ok.h.Get("Vary"), "Origin") {
		t.Errorf("allowed origin: ACAO %q Vary %q", ok.h.Get("Access-Control-Allow-Origin"), ok.h.Get("Vary"))
	}
	no := o.do("OPTIONS", uploadsPath, hdr("Origin", "https://evil.example", "Access-Control-Request-Method", "PATCH"), nil)
	if no.h.Get("Access-Control-Allow-Origin") != "" || no.h.Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("other origin got CORS headers: %v", no.h)
	}
}

// TestLongMetadataAndMaxChunk: a long Upload-Metadata fits in the header
// buffer, and a PATCH of exactly 64 MiB is accepted.
func TestLongMetadataAndMaxChunk(t *testing.T) {
	e := newEnv(t, nil, nil)
	name := strings.Repeat("n", 20<<10) + ".mp4"
	size := 64 << 20
	c := e.create("acme", int64(size), "Upload-Metadata", md("type", "video", "filename", name, "note", strings.Repeat("x", 8<<10)))
	if c.Asset.Filename == nil || *c.Asset.Filename != name {
		t.Fatalf("long filename not kept")
	}
	data := randomBytes(t, size)
	r := e.patch("acme", c.Location, 0, data)
	if r.status != http.StatusNoContent || r.h.Get("Upload-Offset") != strconv.Itoa(size) {
		t.Fatalf("64 MiB PATCH: %d %s", r.status, r.body)
	}
	if _, a := e.getAsset("acme", c.SessionID); a.SHA256 != sha256Hex(data) {
		t.Errorf("sha256 of a 64 MiB upload = %q, want %q", a.SHA256, sha256Hex(data))
	}
	e.wantReady("acme", c.SessionID, data)
	if h := e.head("acme", c.Location); !strings.Contains(h.h.Get("Upload-Metadata"), b64(name)) {
		t.Errorf("HEAD lost the long metadata")
	}
}
