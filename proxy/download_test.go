package proxy

import (
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// ready uploads data as a new asset of account with metadata kv and
// returns its JSON once ready and its download_url serves data.
func (e *env) ready(account string, data []byte, kv ...string) assetJSON {
	e.t.Helper()
	c := e.create(account, int64(len(data)), kv...)
	if r := e.patch(account, c.Location, 0, data); r.status != http.StatusNoContent {
		e.t.Fatalf("PATCH: %d %s, want 204", r.status, r.body)
	}
	r, a := e.getAsset(account, c.SessionID)
	if r.status != http.StatusOK || a.State != "ready" || a.DownloadURL == "" {
		e.t.Fatalf("GET asset: %d %s, want 200 ready with a download_url", r.status, r.body)
	}
	e.wantDownload(a, data)
	return a
}

// TestDeleteStopsDownload: DELETE of a ready asset frees its file, and the
// download_url issued before answers exactly what an unknown asset's does.
func TestDeleteStopsDownload(t *testing.T) {
	e := newEnv(t, nil, nil)
	a := e.ready("acme", []byte("0123456789"))
	if d := e.do("GET", a.DownloadURL, nil, nil); d.status != http.StatusOK {
		t.Fatalf("download before DELETE: %d, want 200", d.status)
	}
	if r := e.do("DELETE", uploadsPath+"/"+a.ID, e.tusHdr("acme"), nil); r.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s, want 204", r.status, r.body)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "uploads", a.ID)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stored file after DELETE: %v, want it gone", err)
	}
	unknown := "019deafa-0000-7000-8000-000000000001"
	got := answer(e.do("GET", a.DownloadURL, nil, nil), a.ID)
	want := answer(e.do("GET", e.url+downloadPath+unknown+"?token="+e.srv.assets.signDownload(unknown, time.Now().Add(time.Hour)), nil, nil), unknown)
	if got != want {
		t.Errorf("download_url issued before the DELETE:\n%s\nwant the answer of an unknown asset:\n%s", got, want)
	}
}

// TestDownloadHeaders: a download is a file to save, never a page of this
// origin: whatever content_type the uploader chose, only media types and
// application/octet-stream are served as stored, with nosniff, a sandbox
// CSP and an attachment disposition carrying the file name (RFC 8187 for
// UTF-8 names).
func TestDownloadHeaders(t *testing.T) {
	e := newEnv(t, nil, nil)
	tests := []struct {
		contentType, filename string
		wantType, wantDisp    string
	}{
		{"video/mp4", "clip.mp4", "video/mp4", `attachment; filename="clip.mp4"`},
		{`audio/mp4; codecs="mp4a.40.2"`, "", `audio/mp4; codecs="mp4a.40.2"`, "attachment"},
		{"application/octet-stream", "a b.bin", "application/octet-stream", `attachment; filename="a b.bin"`},
		{"text/html", "x.html", "application/octet-stream", `attachment; filename="x.html"`},
		{"image/svg+xml", "x.svg", "application/octet-stream", `attachment; filename="x.svg"`},
		{"text/html; charset=utf-8", `épisode "1"/2.mp4`, "application/octet-stream",
			`attachment; filename="_pisode _1__2.mp4"; filename*=UTF-8''%C3%A9pisode%20%221%22%2F2.mp4`},
	}
	for _, tt := range tests {
		a := e.ready("acme", []byte("<script>alert(1)</script>"),
			"Upload-Metadata", md("type", "video", "content_type", tt.contentType, "filename", tt.filename))
		for _, method := range []string{"GET", "HEAD"} {
			d := e.do(method, a.DownloadURL, nil, nil)
			got := []string{d.h.Get("Content-Type"), d.h.Get("Content-Disposition"), d.h.Get("X-Content-Type-Options"), d.h.Get("Content-Security-Policy")}
			want := []string{tt.wantType, tt.wantDisp, "nosniff", "default-src 'none'; sandbox"}
			if d.status != http.StatusOK || !slices.Equal(got, want) {
				t.Errorf("%s download of content_type %q, filename %q: %d %q, want 200 %q", method, tt.contentType, tt.filename, d.status, got, want)
			}
		}
		// The exact name comes back from the header.
		if _, params, err := mime.ParseMediaType(tt.wantDisp); err != nil || params["filename"] != tt.filename && tt.filename != "" {
			t.Errorf("Content-Disposition %q parses to filename %q (%v), want %q", tt.wantDisp, params["filename"], err, tt.filename)
		}
	}
	// A refused download carries the same protection.
	if d := e.do("GET", e.url+downloadPath+"019deafa-0000-7000-8000-000000000001?token=1.x", nil, nil); d.status != http.StatusForbidden ||
		d.h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("download with a bad token: %d nosniff %q, want 403 nosniff", d.status, d.h.Get("X-Content-Type-Options"))
	}
}

func TestAttachment(t *testing.T) {
	tests := []struct{ name, want string }{
		{"", "attachment"},
		{"a.mp4", `attachment; filename="a.mp4"`},
		{"100%.mp4", `attachment; filename="100_.mp4"; filename*=UTF-8''100%25.mp4`},
		{"a\r\nSet-Cookie: x=1", `attachment; filename="a__Set-Cookie: x=1"`},
		{"evil\u202egpj.exe", `attachment; filename="evil_gpj.exe"`},
		{"nul\x00\u0085\u2066é.mp4", `attachment; filename="nul____.mp4"; filename*=UTF-8''nul___%C3%A9.mp4`},
		{"日本.mp4", `attachment; filename="__.mp4"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.mp4`},
		{"bad\xff.mp4", `attachment; filename="bad_.mp4"; filename*=UTF-8''bad%EF%BF%BD.mp4`},
		{`back\slash`, `attachment; filename="back_slash"; filename*=UTF-8''back%5Cslash`},
	}
	for _, tt := range tests {
		if got := attachment(tt.name); got != tt.want {
			t.Errorf("attachment(%q) = %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestDownloadValidators: If-None-Match answers 304 for the asset's ETag,
// If-Range with another validator ignores the Range, and Cache-Control
// never outlives the token.
func TestDownloadValidators(t *testing.T) {
	e := newEnv(t, nil, nil)
	data := []byte("0123456789")
	a := e.ready("acme", data)
	etag := `"` + sha256Hex(data) + `"`
	tests := []struct {
		name   string
		h      http.Header
		status int
		body   string
	}{
		{"If-None-Match the ETag", hdr("If-None-Match", etag), http.StatusNotModified, ""},
		{"If-None-Match in a list, weak", hdr("If-None-Match", `"x", W/`+etag), http.StatusNotModified, ""},
		{"If-None-Match *", hdr("If-None-Match", "*"), http.StatusNotModified, ""},
		{"If-None-Match another", hdr("If-None-Match", `"x"`), http.StatusOK, string(data)},
		{"If-Range the ETag", hdr("Range", "bytes=2-4", "If-Range", etag), http.StatusPartialContent, "234"},
		{"If-Range another ETag", hdr("Range", "bytes=2-4", "If-Range", `"x"`), http.StatusOK, string(data)},
		{"If-Range weak", hdr("Range", "bytes=2-4", "If-Range", "W/"+etag), http.StatusOK, string(data)},
		{"If-Range a date", hdr("Range", "bytes=2-4", "If-Range", "Thu, 01 Jan 2026 00:00:00 GMT"), http.StatusOK, string(data)},
	}
	for _, tt := range tests {
		d := e.do("GET", a.DownloadURL, tt.h, nil)
		if d.status != tt.status || string(d.body) != tt.body {
			t.Errorf("%s: %d %q, want %d %q", tt.name, d.status, d.body, tt.status, tt.body)
		}
		if d.h.Get("ETag") != etag {
			t.Errorf("%s: ETag %q, want %q", tt.name, d.h.Get("ETag"), etag)
		}
	}

	if cc := e.do("GET", a.DownloadURL, nil, nil).h.Get("Cache-Control"); cc != "private, max-age=300" {
		t.Errorf("Cache-Control with an hour left on the token: %q, want private, max-age=300", cc)
	}
	short := e.url + downloadPath + a.ID + "?token=" + e.srv.assets.signDownload(a.ID, time.Now().Add(30*time.Second))
	d := e.do("GET", short, nil, nil)
	var maxAge int
	if _, err := fmt.Sscanf(d.h.Get("Cache-Control"), "private, max-age=%d", &maxAge); err != nil || maxAge > 30 || maxAge < 25 {
		t.Errorf("Cache-Control with 30s left on the token: %q (%v), want max-age of at most 30", d.h.Get("Cache-Control"), err)
	}
}
