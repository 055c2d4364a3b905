package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// Answers a compliance review of the TUS 1.0.0 and draft
// (draft-ietf-httpbis-resumable-upload) front doors and of RFC 9110 found
// wrong; docs/protocol-versions.md tables them per interop version.

// partialUpload creates a TUS partial upload (Upload-Concat: partial)
// holding data and returns its URL.
func partialUpload(t *testing.T, s *server, data []byte) string {
	t.Helper()
	r := do(t, req{Method: "POST", URL: s.Endpoint(), Key: acmeKey, Header: map[string]string{
		"Upload-Concat": "partial", "Upload-Length": fmt.Sprint(len(data))}})
	loc := r.Header.Get("Location")
	if r.Status != http.StatusCreated || loc == "" {
		t.Fatalf("POST partial: got %d %s, want 201", r.Status, r.Body)
	}
	if r := patch(t, loc, acmeKey, 0, data); r.Status != http.StatusNoContent {
		t.Fatalf("PATCH partial: got %d %s, want 204", r.Status, r.Body)
	}
	return loc
}

// finalUpload POSTs Upload-Concat: final with concat and returns the
// answer.
func finalUpload(t *testing.T, s *server, concat string) reply {
	t.Helper()
	return do(t, req{Method: "POST", URL: s.Endpoint(), Key: acmeKey, Header: map[string]string{
		"Upload-Concat": concat, "Upload-Metadata": videoMeta("joined.mp4")}})
}

// createdAsset decodes a 201's {"session_id", "asset"}.
func createdAsset(t *testing.T, r reply) string {
	t.Helper()
	var body struct {
		Asset struct {
			ID string `json:"id"`
		} `json:"asset"`
	}
	if r.Status != http.StatusCreated || json.Unmarshal(r.Body, &body) != nil || body.Asset.ID == "" {
		t.Fatalf("final: got %d %s, want 201 with the asset", r.Status, r.Body)
	}
	return body.Asset.ID
}

// TestConcatRepeats: TUS lets a final upload list a partial upload more
// than once; the final is the concatenation in the listed order, repeats
// included.
func TestConcatRepeats(t *testing.T) {
	s := startServer(t)
	a, b := randomBytes(1000), randomBytes(777)
	la, lb := partialUpload(t, s, a), partialUpload(t, s, b)
	id := createdAsset(t, finalUpload(t, s, "final;"+la+" "+lb+" "+la+" "+la))
	want := append(append(append(append([]byte{}, a...), b...), a...), a...)
	wantReady(t, s, acmeKey, id, want)
}

// readyAsset uploads data over TUS in one PATCH and returns the ready
// asset, its download checked against data.
func readyAsset(t *testing.T, s *server, data []byte) asset {
	t.Helper()
	c := createUpload(t, s, acmeKey, int64(len(data)))
	if r := patch(t, c.Location, acmeKey, 0, data); r.Status != http.StatusNoContent {
		t.Fatalf("PATCH: got %d %s, want 204", r.Status, r.Body)
	}
	return wantReady(t, s, acmeKey, c.AssetID, data)
}

// getDownload GETs (or HEADs) a download URL with extra headers.
func getDownload(t *testing.T, method, u string, h map[string]string) reply {
	t.Helper()
	return do(t, req{Method: method, URL: u, NoTus: true, Header: h})
}

// TestDownloadConditional: a download honours If-Match (412 when no tag
// matches strongly, RFC 9110 13.1.1) and If-Unmodified-Since, and sends
// Last-Modified, which If-Modified-Since then compares with (304).
func TestDownloadConditional(t *testing.T) {
	s := startServer(t)
	data := randomBytes(1000)
	a := readyAsset(t, s, data)
	etag := `"` + a.SHA256 + `"`

	full := getDownload(t, "GET", a.DownloadURL, nil)
	lm := full.Header.Get("Last-Modified")
	lmt, err := http.ParseTime(lm)
	if err != nil || lmt.After(time.Now()) {
		t.Fatalf("Last-Modified: got %q (%v), want an HTTP-date not in the future", lm, err)
	}
	past := lmt.Add(-time.Hour).Format(http.TimeFormat)
	cases := []struct {
		name   string
		h      map[string]string
		status int
	}{
		{"If-Match another tag", map[string]string{"If-Match": `"0000"`}, http.StatusPreconditionFailed},
		{"If-Match the weak tag", map[string]string{"If-Match": "W/" + etag}, http.StatusPreconditionFailed},
		{"If-Match the tag", map[string]string{"If-Match": `"0000", ` + etag}, http.StatusOK},
		{"If-Match *", map[string]string{"If-Match": "*"}, http.StatusOK},
		{"If-Unmodified-Since before", map[string]string{"If-Unmodified-Since": past}, http.StatusPreconditionFailed},
		{"If-Unmodified-Since Last-Modified", map[string]string{"If-Unmodified-Since": lm}, http.StatusOK},
		{"If-Match wins over If-Unmodified-Since", map[string]string{"If-Match": etag, "If-Unmodified-Since": past}, http.StatusOK},
		{"If-Modified-Since Last-Modified", map[string]string{"If-Modified-Since": lm}, http.StatusNotModified},
		{"If-Modified-Since before", map[string]string{"If-Modified-Since": past}, http.StatusOK},
		{"If-None-Match wins over If-Modified-Since", map[string]string{"If-None-Match": `"0000"`, "If-Modified-Since": lm}, http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := getDownload(t, "GET", a.DownloadURL, c.h)
			if r.Status != c.status {
				t.Fatalf("got %d %s, want %d", r.Status, r.Body, c.status)
			}
			if c.status == http.StatusOK && !bytes.Equal(r.Body, data) {
				t.Errorf("body: got %d bytes, want the %d uploaded", len(r.Body), len(data))
			}
			if c.status == http.StatusPreconditionFailed && r.Header.Get("Tus-Version") != "" {
				t.Errorf("a download's 412 carries Tus-Version %q", r.Header.Get("Tus-Version"))
			}
			if got := r.Header.Get("Last-Modified"); c.status != http.StatusPreconditionFailed && got != lm {
				t.Errorf("Last-Modified: got %q, want %q", got, lm)
			}
		})
	}
}

// TestDownloadHeadNoRange: RFC 9110 defines Range for GET only: a HEAD
// with Range answers 200 with the whole object's Content-Length and no
// Content-Range, even for a range that GET would refuse with 416.
func TestDownloadHeadNoRange(t *testing.T) {
	s := startServer(t)
	data := randomBytes(1000)
	a := readyAsset(t, s, data)
	for _, rg := range []string{"bytes=0-9", "bytes=-5", "bytes=5000-"} {
		r := getDownload(t, "HEAD", a.DownloadURL, map[string]string{"Range": rg})
		if r.Status != http.StatusOK || r.Header.Get("Content-Length") != "1000" || r.Header.Get("Content-Range") != "" {
			t.Errorf("HEAD with Range %s: got %d, Content-Length %q, Content-Range %q; want 200, 1000, none",
				rg, r.Status, r.Header.Get("Content-Length"), r.Header.Get("Content-Range"))
		}
	}
	// GET still honours it.
	r := getDownload(t, "GET", a.DownloadURL, map[string]string{"Range": "bytes=0-9"})
	if r.Status != http.StatusPartialContent || !bytes.Equal(r.Body, data[:10]) {
		t.Errorf("GET with Range: got %d and %d bytes, want 206 and the first 10", r.Status, len(r.Body))
	}
}

// TestTUSErrorsCarryExpires: TUS's expiration extension has
// Upload-Expires on every answer about an upload that will expire; the
// 409 of a wrong offset and the 460 of a wrong checksum carry it too.
func TestTUSErrorsCarryExpires(t *testing.T) {
	s := startServer(t)
	c := createUpload(t, s, acmeKey, 10)
	r := patch(t, c.Location, acmeKey, 3, []byte("abc"))
	if r.Status != http.StatusConflict {
		t.Fatalf("PATCH at a wrong offset: got %d %s, want 409", r.Status, r.Body)
	}
	wantExpires(t, "409", r)
	r = do(t, req{Method: "PATCH", URL: c.Location, Key: acmeKey, Body: strings.NewReader("abc"), Header: map[string]string{
		"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
		"Upload-Checksum": "sha1 " + b64("not the sum of abc!!"),
	}})
	if r.Status != 460 {
		t.Fatalf("PATCH with a wrong checksum: got %d %s, want 460", r.Status, r.Body)
	}
	wantExpires(t, "460", r)
	// The upload is unharmed: it completes and downloads whole.
	if r := patch(t, c.Location, acmeKey, 0, []byte("0123456789")); r.Status != http.StatusNoContent {
		t.Fatalf("PATCH: got %d %s, want 204", r.Status, r.Body)
	}
	wantReady(t, s, acmeKey, c.AssetID, []byte("0123456789"))
}

// wantExpires fails unless r carries an Upload-Expires in the future
// (RFC 9110 HTTP-date).
func wantExpires(t *testing.T, what string, r reply) {
	t.Helper()
	v := r.Header.Get("Upload-Expires")
	e, err := http.ParseTime(v)
	if err != nil || !e.After(time.Now()) {
		t.Errorf("%s: Upload-Expires: got %q (%v), want a date in the future (status %d)", what, v, err, r.Status)
	}
}

// TestIETFOptionsAcceptPatch: from interop 8 OPTIONS names the append
// media type in Accept-Patch (RFC 5789).
func TestIETFOptionsAcceptPatch(t *testing.T) {
	s := startServer(t)
	_, r := draftRoundTrip(t, "OPTIONS", s.Endpoint(), hdr{interop(8)}, nil)
	if r.Status != http.StatusNoContent {
		t.Fatalf("OPTIONS: got %d, want 204", r.Status)
	}
	wantHeader(t, "OPTIONS interop 8", r, "Accept-Patch", "application/partial-upload")
}

// TestIETFFailedAppendSaysIncomplete: from interop 7, every append that
// left the upload incomplete says Upload-Complete: ?0, refusals included.
func TestIETFFailedAppendSaysIncomplete(t *testing.T) {
	s := startServer(t)
	partial := [2]string{"Content-Type", "application/partial-upload"}
	for _, v := range []int{7, 8} {
		loc := draftUpload(t, s, v, 10)
		cases := []struct {
			name   string
			h      hdr
			body   []byte
			status int
		}{
			{"not partial-upload", hdr{auth(acmeKey), interop(v), {"Upload-Complete", "?0"}, {"Upload-Offset", "0"}, {"Content-Type", "video/mp4"}}, []byte("x"), 415},
			{"past the length", hdr{auth(acmeKey), interop(v), {"Upload-Complete", "?0"}, {"Upload-Offset", "0"}, partial}, make([]byte, 11), 413},
			{"no Upload-Offset", hdr{auth(acmeKey), interop(v), {"Upload-Complete", "?0"}, partial}, []byte("x"), 400},
			{"no Upload-Complete", hdr{auth(acmeKey), interop(v), {"Upload-Offset", "0"}, partial}, []byte("x"), 400},
			{"wrong offset", hdr{auth(acmeKey), interop(v), {"Upload-Complete", "?0"}, {"Upload-Offset", "4"}, partial}, []byte("x"), 409},
			{"no key", hdr{interop(v), {"Upload-Complete", "?0"}, {"Upload-Offset", "0"}, partial}, []byte("x"), 401},
			{"success", hdr{auth(acmeKey), interop(v), {"Upload-Complete", "?0"}, {"Upload-Offset", "0"}, partial}, []byte("01234"), 204},
		}
		for _, c := range cases {
			_, r := draftRoundTrip(t, "PATCH", loc, c.h, c.body)
			if r.Status != c.status {
				t.Errorf("interop %d %s: got %d %s, want %d", v, c.name, r.Status, r.Body, c.status)
			}
			wantHeader(t, fmt.Sprintf("interop %d %s", v, c.name), r, "Upload-Complete", "?0")
		}
		_, r := draftRoundTrip(t, "PATCH", loc, hdr{auth(acmeKey), interop(v), {"Upload-Complete", "?1"}, {"Upload-Offset", "5"}, partial}, []byte("56789"))
		a := wantAssetReply(t, "last append", r, []byte("0123456789"))
		wantReady(t, s, acmeKey, a.ID, []byte("0123456789"))
	}
}

// draftUpload creates an upload of length bytes over the draft (careful
// creation) and returns its URL.
func draftUpload(t *testing.T, s *server, v, length int) string {
	t.Helper()
	done := [2]string{"Upload-Complete", "?0"}
	if v < 5 {
		done = [2]string{"Upload-Incomplete", "?1"}
	}
	_, r := draftRoundTrip(t, "POST", s.Endpoint(), hdr{auth(acmeKey), interop(v), done,
		{"Content-Type", "video/mp4"}, {"Upload-Length", fmt.Sprint(length)}}, []byte{})
	loc := r.Header.Get("Location")
	if r.Status != http.StatusCreated || loc == "" {
		t.Fatalf("create at interop %d: got %d %s, want 201 with Location", v, r.Status, r.Body)
	}
	return loc
}

// TestIETFEarlyVersions: the answers interop 3, 5 and 6 (drafts -01 to
// -05) prescribe where later versions changed them: offset retrieval and
// cancellation must not carry Upload-Offset (400), an incomplete append
// is 201, an append to a completed upload 400, an upload no longer
// active 404. Interop 7 keeps the later answers.
func TestIETFEarlyVersions(t *testing.T) {
	s := startServer(t, withArgs("--upload-expiry", "2s", "--janitor-interval", "1h"))
	data := []byte("0123456789")
	for _, v := range []int{3, 5, 6, 7} {
		early := v <= 6
		appendHdr := func(offset int, done bool) hdr {
			h := hdr{auth(acmeKey), interop(v), {"Upload-Offset", fmt.Sprint(offset)}, {"Content-Type", "application/partial-upload"}}
			if v < 5 {
				return append(h, [2]string{"Upload-Incomplete", sfBool(!done)})
			}
			return append(h, [2]string{"Upload-Complete", sfBool(done)})
		}
		loc := draftUpload(t, s, v, len(data))
		for _, m := range []string{"HEAD", "GET", "DELETE"} {
			_, r := draftRoundTrip(t, m, loc, hdr{auth(acmeKey), interop(v), {"Upload-Offset", "0"}}, nil)
			want := http.StatusNoContent
			if early {
				want = http.StatusBadRequest
			}
			if r.Status != want {
				t.Errorf("interop %d: %s with Upload-Offset: got %d %s, want %d", v, m, r.Status, r.Body, want)
			}
		}
		if !early {
			loc = draftUpload(t, s, v, len(data)) // the DELETE above cancelled it
		}
		_, r := draftRoundTrip(t, "PATCH", loc, appendHdr(0, false), data[:4])
		want := http.StatusNoContent
		if early {
			want = http.StatusCreated
		}
		if r.Status != want {
			t.Errorf("interop %d: incomplete append: got %d %s, want %d", v, r.Status, r.Body, want)
		}
		_, r = draftRoundTrip(t, "PATCH", loc, appendHdr(4, true), data[4:])
		a := wantAssetReply(t, fmt.Sprintf("interop %d last append", v), r, data)
		_, r = draftRoundTrip(t, "PATCH", loc, appendHdr(10, false), []byte("x"))
		want = http.StatusRequestEntityTooLarge
		if early {
			want = http.StatusBadRequest
		}
		if r.Status != want || early && !strings.Contains(string(r.Body), "upload_complete") {
			t.Errorf("interop %d: append to a completed upload: got %d %s, want %d", v, r.Status, r.Body, want)
		}
		wantReady(t, s, acmeKey, a.ID, data)
	}
	// Uploads left incomplete expire (2 s); the janitor has not run since
	// the start, so each is there, expired.
	locs := map[int]string{}
	for _, v := range []int{3, 5, 6, 7} {
		locs[v] = draftUpload(t, s, v, len(data))
	}
	time.Sleep(2500 * time.Millisecond)
	for _, v := range []int{3, 5, 6, 7} {
		_, r := draftRoundTrip(t, "HEAD", locs[v], hdr{auth(acmeKey), interop(v)}, nil)
		want := http.StatusGone
		if v <= 6 {
			want = http.StatusNotFound
		}
		if r.Status != want {
			t.Errorf("interop %d: HEAD of an expired upload: got %d, want %d", v, r.Status, want)
		}
	}
}

func sfBool(b bool) string {
	if b {
		return "?1"
	}
	return "?0"
}

// TestConcatEchoedAsReceived: HEAD of a final upload echoes Upload-Concat
// as the creation sent it (here paths, not absolute URLs), and over a
// restart (the value is stored).
func TestConcatEchoedAsReceived(t *testing.T) {
	s := startServer(t)
	a, b := randomBytes(100), randomBytes(50)
	la, lb := partialUpload(t, s, a), partialUpload(t, s, b)
	pa, pb := strings.TrimPrefix(la, s.URL), strings.TrimPrefix(lb, s.URL)
	sent := "final;" + pb + " " + la + "  " + pa
	r := finalUpload(t, s, sent)
	id := createdAsset(t, r)
	wantReady(t, s, acmeKey, id, append(append(append([]byte{}, b...), a...), a...))
	loc := r.Header.Get("Location")
	for _, when := range []string{"before", "after"} {
		h := do(t, req{Method: "HEAD", URL: loc, Key: acmeKey})
		if got := h.Header.Get("Upload-Concat"); h.Status != http.StatusOK || got != sent {
			t.Errorf("HEAD of the final %s a restart: got %d, Upload-Concat %q, want 200, %q", when, h.Status, got, sent)
		}
		if when == "before" {
			s.Stop()
			s.Restart()
			loc = s.URL + strings.TrimPrefix(loc, loc[:strings.Index(loc, tusPath)])
		}
	}
}

// TestIETF413MaxAge: a 413 about an upload announces the upload's own
// max-age (the seconds until it expires), never more than the HEAD that
// follows: here the upload was made under a 1 h expiry and the server now
// runs with 24 h.
func TestIETF413MaxAge(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, withDataDir(dir), withArgs("--upload-expiry", "1h"))
	loc := draftUpload(t, s, 8, 10)
	path := loc[strings.Index(loc, tusPath):]
	s.Stop()
	s = startServer(t, withDataDir(dir))
	loc = s.URL + path
	partial := [2]string{"Content-Type", "application/partial-upload"}
	cases := []struct {
		name string
		h    hdr
		body []byte
	}{
		{"past the length", hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?0"}, {"Upload-Offset", "0"}, partial}, make([]byte, 11)},
		{"Content-Digest on more than 64 MiB", hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?0"}, {"Upload-Offset", "0"}, partial,
			{"Content-Length", fmt.Sprint(64<<20 + 1)}, {"Content-Digest", "sha-256=:" + strings.Repeat("A", 43) + "=:"},
			{"Expect", "100-continue"}}, nil},
	}
	for _, c := range cases {
		start := time.Now()
		_, r := draftRoundTrip(t, "PATCH", loc, c.h, c.body)
		if r.Status != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s: got %d %s, want 413", c.name, r.Status, r.Body)
		}
		got := maxAge(t, c.name, r)
		_, h := draftRoundTrip(t, "HEAD", loc, hdr{auth(acmeKey), interop(8)}, nil)
		head := maxAge(t, "HEAD", h)
		slack := int64(time.Since(start)/time.Second) + 1
		if got > head+slack || got > 3600 {
			t.Errorf("%s: 413 max-age %d, HEAD right after %d: want at most the HEAD's (+%d s elapsed) and 3600", c.name, got, head, slack)
		}
	}
}

// maxAge reads Upload-Limit's max-age.
func maxAge(t *testing.T, what string, r testsvc.DraftReply) int64 {
	t.Helper()
	l := r.Header.Get("Upload-Limit")
	_, rest, ok := strings.Cut(l, "max-age=")
	var n int64
	if _, err := fmt.Sscan(rest, &n); !ok || err != nil {
		t.Fatalf("%s: Upload-Limit %q has no max-age (status %d)", what, l, r.Status)
	}
	return n
}

// TestAllowAndGet: OPTIONS of every asset route names its methods in
// Allow (RFC 9110 10.2.1), and GET of an upload URL answers as HEAD does
// (RFC 9110 9.3.2): the same status and Upload-* fields for an own
// upload, 404 for a missing or another account's.
func TestAllowAndGet(t *testing.T) {
	s := startServer(t)
	data := randomBytes(100)
	a := readyAsset(t, s, data)
	c := createUpload(t, s, acmeKey, 10)
	if r := patch(t, c.Location, acmeKey, 0, []byte("0123")); r.Status != http.StatusNoContent {
		t.Fatalf("PATCH: got %d %s, want 204", r.Status, r.Body)
	}
	for _, o := range []struct{ url, allow string }{
		{s.URL + "/api/v1/assets/" + a.ID, "GET, HEAD, OPTIONS"},
		{a.DownloadURL, "GET, HEAD, OPTIONS"},
		{s.Endpoint(), "OPTIONS, POST"},
		{c.Location, "OPTIONS, HEAD, GET, PATCH, DELETE"},
	} {
		r := do(t, req{Method: "OPTIONS", URL: o.url, NoTus: true})
		if r.Status != http.StatusNoContent && r.Status != http.StatusOK || r.Header.Get("Allow") != o.allow {
			t.Errorf("OPTIONS %s: got %d, Allow %q, want 204 and %q", o.url, r.Status, r.Header.Get("Allow"), o.allow)
		}
	}
	missing := s.Endpoint() + "/019deafa-0000-7000-8000-000000000001"
	for _, u := range []struct {
		name, url, key string
	}{{"own", c.Location, acmeKey}, {"another account's", c.Location, globexKey}, {"missing", missing, acmeKey}} {
		h := do(t, req{Method: "HEAD", URL: u.url, Key: u.key})
		g := do(t, req{Method: "GET", URL: u.url, Key: u.key})
		if g.Status != h.Status {
			t.Errorf("%s upload: GET %d %s, HEAD %d: want the same", u.name, g.Status, g.Body, h.Status)
		}
		for _, f := range []string{"Upload-Offset", "Upload-Length", "Upload-Metadata", "Cache-Control"} {
			if g.Header.Get(f) != h.Header.Get(f) {
				t.Errorf("%s upload: GET %s %q, HEAD %q", u.name, f, g.Header.Get(f), h.Header.Get(f))
			}
		}
	}
	if r := patch(t, c.Location, acmeKey, 4, []byte("456789")); r.Status != http.StatusNoContent {
		t.Fatalf("PATCH: got %d %s, want 204", r.Status, r.Body)
	}
	wantReady(t, s, acmeKey, c.AssetID, []byte("0123456789"))
}
