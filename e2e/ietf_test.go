package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// The IETF draft "Resumable Uploads for HTTP" on the TUS endpoint,
// spoken byte by byte on raw connections so that the 104
// interim responses are read from the socket as a client sees them.

// The raw draft client lives in testsvc (shared with e2e/fleet).
type hdr = testsvc.Hdr

var (
	dialDraft      = testsvc.DialDraft
	draftRoundTrip = testsvc.DraftRoundTrip
)

func auth(key string) [2]string { return [2]string{"Authorization", "Bearer " + key} }

func interop(v int) [2]string { return [2]string{"Upload-Draft-Interop-Version", fmt.Sprint(v)} }

// wantHeader fails unless r has name: want.
func wantHeader(t *testing.T, what string, r testsvc.DraftReply, name, want string) {
	t.Helper()
	if got := r.Header.Get(name); got != want {
		t.Errorf("%s: %s: got %q, want %q (status %d, headers %v)", what, name, got, want, r.Status, r.Header)
	}
}

// wantLimit fails unless r carries the Upload-Limit of the issue: 50 GiB,
// 64 MiB appends and a max-age within the 24 h expiry.
func wantLimit(t *testing.T, what string, r testsvc.DraftReply) {
	t.Helper()
	l := r.Header.Get("Upload-Limit")
	var age int64
	rest, ok := strings.CutPrefix(l, "max-size=53687091200, max-append-size=67108864, max-age=")
	if _, err := fmt.Sscan(rest, &age); !ok || err != nil || age <= 0 || age > 86400 {
		t.Errorf("%s: Upload-Limit: got %q, want max-size=53687091200, max-append-size=67108864, max-age=(0, 86400]", what, l)
	}
}

// wantAssetReply decodes a completing response: 200, the asset JSON,
// ready, and its download_url serves exactly data.
func wantAssetReply(t *testing.T, what string, r testsvc.DraftReply, data []byte) asset {
	t.Helper()
	var a asset
	if r.Status != http.StatusOK {
		t.Fatalf("%s: got %d %s, want 200 with the asset", what, r.Status, r.Body)
	}
	if err := json.Unmarshal(r.Body, &a); err != nil || a.State != "ready" || a.SHA256 != sha256Hex(data) {
		t.Fatalf("%s: body %s (%v): want a ready asset with sha256 %s", what, r.Body, err, sha256Hex(data))
	}
	wantDownload(t, what, a.DownloadURL, data)
	return a
}

// TestIETFInterop8 runs the current draft's examples: optimistic creation
// with its 104, careful creation, appends, offset retrieval, a mismatch
// with its problem, the replay of a lost final response, and cancel.
func TestIETFInterop8(t *testing.T) {
	s := startServer(t)
	ep := s.Endpoint()

	t.Run("options", func(t *testing.T) {
		_, r := draftRoundTrip(t, "OPTIONS", ep, hdr{}, nil)
		if r.Status != http.StatusNoContent {
			t.Fatalf("OPTIONS: got %d, want 204", r.Status)
		}
		wantLimit(t, "OPTIONS", r)
	})

	t.Run("optimistic", func(t *testing.T) {
		data := randomBytes(3<<20 + 17)
		interim, r := draftRoundTrip(t, "POST", ep, hdr{auth(acmeKey), interop(8),
			{"Upload-Complete", "?1"}, {"Content-Type", "video/mp4"}, {"Upload-Length", fmt.Sprint(len(data))},
			{"Content-Disposition", `inline; filename="file name.mp4"; filename*=UTF-8''f%C3%BCr.mp4`}}, data)
		if len(interim) != 1 || interim[0].Status != 104 {
			t.Fatalf("interim responses: got %+v, want one 104", interim)
		}
		i := interim[0]
		wantHeader(t, "104", i, "Upload-Draft-Interop-Version", "8")
		wantLimit(t, "104", i)
		loc := i.Header.Get("Location")
		if !strings.HasPrefix(loc, ep+"/") {
			t.Fatalf("104 Location: got %q, want under %s", loc, ep)
		}
		a := wantAssetReply(t, "POST", r, data)
		wantHeader(t, "POST", r, "Upload-Complete", "?1")
		if a.Filename != "für.mp4" || a.ContentType != "video/mp4" || a.Type != "video" || !strings.HasSuffix(loc, "/"+a.ID) {
			t.Errorf("asset: got %+v, want video, video/mp4, für.mp4, the id of %s", a, loc)
		}
		wantReady(t, s, acmeKey, a.ID, data)
		// The upload resource stays: HEAD tells it is complete.
		_, h := draftRoundTrip(t, "HEAD", loc, hdr{auth(acmeKey), interop(8)}, nil)
		wantHeader(t, "HEAD after completion", h, "Upload-Complete", "?1")
		wantHeader(t, "HEAD after completion", h, "Upload-Offset", fmt.Sprint(len(data)))
	})

	t.Run("careful", func(t *testing.T) {
		data := randomBytes(2<<20 + 999)
		interim, r := draftRoundTrip(t, "POST", ep+"?type=audio&filename=take.m4a&content_type=audio/mp4",
			hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?0"}}, []byte{})
		if len(interim) != 0 || r.Status != http.StatusCreated {
			t.Fatalf("careful creation: got %+v then %d %s, want no 104 and 201", interim, r.Status, r.Body)
		}
		wantHeader(t, "201", r, "Upload-Complete", "?0")
		wantLimit(t, "201", r)
		loc := r.Header.Get("Location")
		app := func(offset int, part []byte, done string) testsvc.DraftReply {
			_, r := draftRoundTrip(t, "PATCH", loc, hdr{auth(acmeKey), interop(8), {"Upload-Complete", done},
				{"Upload-Offset", fmt.Sprint(offset)}, {"Content-Type", "application/partial-upload"}}, part)
			return r
		}
		half := len(data) / 2
		r = app(0, data[:half], "?0")
		if r.Status != http.StatusNoContent {
			t.Fatalf("append: got %d %s, want 204", r.Status, r.Body)
		}
		wantHeader(t, "append", r, "Upload-Complete", "?0")
		wantHeader(t, "append", r, "Upload-Offset", fmt.Sprint(half))

		_, h := draftRoundTrip(t, "HEAD", loc, hdr{auth(acmeKey), interop(8)}, nil)
		if h.Status != http.StatusNoContent {
			t.Fatalf("HEAD: got %d, want 204", h.Status)
		}
		wantHeader(t, "HEAD", h, "Upload-Offset", fmt.Sprint(half))
		wantHeader(t, "HEAD", h, "Upload-Complete", "?0")
		wantHeader(t, "HEAD", h, "Cache-Control", "no-store")
		wantHeader(t, "HEAD", h, "Upload-Length", "")
		wantLimit(t, "HEAD", h)

		r = app(half+5, data[half:], "?1")
		if r.Status != http.StatusConflict || r.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("mismatched append: got %d %q %s, want 409 application/problem+json", r.Status, r.Header.Get("Content-Type"), r.Body)
		}
		wantHeader(t, "409", r, "Upload-Offset", fmt.Sprint(half))
		wantHeader(t, "409", r, "Upload-Complete", "?0")
		var p struct {
			Type     string `json:"type"`
			Status   int    `json:"status"`
			Expected int64  `json:"expected-offset"`
			Provided int64  `json:"provided-offset"`
		}
		if err := json.Unmarshal(r.Body, &p); err != nil || p.Type != "https://iana.org/assignments/http-problem-types#mismatching-upload-offset" ||
			p.Status != 409 || p.Expected != int64(half) || p.Provided != int64(half+5) {
			t.Errorf("409 problem: got %s (%v), want mismatching-upload-offset, expected %d, provided %d", r.Body, err, half, half+5)
		}

		r = app(half, data[half:], "?1")
		a := wantAssetReply(t, "completing append", r, data)
		wantHeader(t, "completing append", r, "Upload-Complete", "?1")
		if a.Type != "audio" || a.Filename != "take.m4a" || a.ContentType != "audio/mp4" {
			t.Errorf("asset from the query: got %+v, want audio, take.m4a, audio/mp4", a)
		}
		// The client lost that answer: the same valid (empty) append
		// gets it again.
		r = app(len(data), []byte{}, "?1")
		wantAssetReply(t, "replayed append", r, data)
		wantHeader(t, "replayed append", r, "Upload-Complete", "?1")
		wantReady(t, s, acmeKey, a.ID, data)
	})

	t.Run("interrupted optimistic creation resumes", func(t *testing.T) {
		data := randomBytes(4<<20 + 3)
		c := dialDraft(t, ep)
		c.Start("POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"},
			{"Content-Type", "video/mp4"}, {"Content-Length", fmt.Sprint(len(data))}})
		// The server reads the first 8 KiB of content before its handler
		// runs (fasthttp's pre-read), so the 104 comes once they are in.
		sent := len(data) / 3
		c.Body(data[:sent])
		i := c.Next("POST")
		if i.Status != 104 || i.Header.Get("Location") == "" {
			t.Fatalf("after the first bytes: got %d %v, want 104 with Location", i.Status, i.Header)
		}
		loc := i.Header.Get("Location")
		time.Sleep(300 * time.Millisecond)
		c.Conn.Close() // the network goes away mid-body

		var off int64
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, h := draftRoundTrip(t, "HEAD", loc, hdr{auth(acmeKey), interop(8)}, nil)
			if h.Status != http.StatusNoContent {
				t.Fatalf("HEAD after the cut: got %d, want 204", h.Status)
			}
			wantHeader(t, "HEAD after the cut", h, "Upload-Complete", "?0")
			wantHeader(t, "HEAD after the cut", h, "Upload-Length", fmt.Sprint(len(data)))
			if _, err := fmt.Sscan(h.Header.Get("Upload-Offset"), &off); err != nil {
				t.Fatalf("HEAD after the cut: Upload-Offset %q: %v", h.Header.Get("Upload-Offset"), err)
			}
			if off == int64(sent) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if off != int64(sent) {
			t.Fatalf("offset after the cut: got %d, want the %d bytes sent", off, sent)
		}
		_, r := draftRoundTrip(t, "PATCH", loc, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"},
			{"Upload-Offset", fmt.Sprint(off)}, {"Content-Type", "application/partial-upload"}}, data[off:])
		a := wantAssetReply(t, "resuming append", r, data)
		wantReady(t, s, acmeKey, a.ID, data)
	})

	t.Run("chunked optimistic creation", func(t *testing.T) {
		// No Content-Length: the length is known when the content ends.
		data := randomBytes(1<<20 + 99)
		c := dialDraft(t, ep)
		c.Start("POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"}, {"Content-Type", "video/mp4"},
			{"Transfer-Encoding", "chunked"}})
		for _, part := range [][]byte{data[:300000], data[300000:]} {
			c.Body(fmt.Appendf(nil, "%x\r\n", len(part)))
			c.Body(part)
			c.Body([]byte("\r\n"))
		}
		c.Body([]byte("0\r\n\r\n"))
		interim, r := c.Final("POST")
		if len(interim) == 0 || interim[0].Header.Get("Location") == "" {
			t.Fatalf("interim: got %+v, want a 104 with Location first", interim)
		}
		for _, p := range interim[1:] {
			// The server cannot tell the last commit of chunked content.
			if p.Header.Get("Location") != "" || p.Header.Get("Upload-Offset") == "" {
				t.Errorf("progress 104: got %v, want Upload-Offset and no Location", p.Header)
			}
		}
		a := wantAssetReply(t, "chunked POST", r, data)
		wantReady(t, s, acmeKey, a.ID, data)
	})

	t.Run("pipelined: a 104 never overtakes an earlier response", func(t *testing.T) {
		// fasthttp holds a response back while the next request is
		// already buffered; the 104 of that next request must not be
		// written before it.
		_, r := draftRoundTrip(t, "POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?0"}, {"Content-Type", "video/mp4"}}, []byte{})
		loc := r.Header.Get("Location")
		data := randomBytes(20000)
		c := dialDraft(t, ep)
		u, _ := url.Parse(loc)
		// One write, so that the server reads both requests at once.
		c.Body(append(fmt.Appendf(nil, "HEAD %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nUpload-Draft-Interop-Version: 8\r\n\r\n"+
			"POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nUpload-Draft-Interop-Version: 8\r\n"+
			"Upload-Complete: ?1\r\nContent-Type: video/mp4\r\nContent-Length: %d\r\n\r\n",
			u.Path, u.Host, acmeKey, tusPath, u.Host, acmeKey, len(data)), data...))
		if h := c.Next("HEAD"); h.Status != http.StatusNoContent || h.Header.Get("Upload-Offset") != "0" {
			t.Fatalf("first response on the connection: got %d %v, want the HEAD's 204", h.Status, h.Header)
		}
		interim, r := c.Final("POST")
		if len(interim) != 1 || interim[0].Status != 104 {
			t.Fatalf("then: got %+v, want the POST's 104", interim)
		}
		wantAssetReply(t, "pipelined POST", r, data)
	})

	t.Run("cancel takes over an append in flight", func(t *testing.T) {
		c := dialDraft(t, ep)
		c.Start("POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"}, {"Content-Type", "video/mp4"},
			{"Content-Length", fmt.Sprint(8 << 20)}})
		c.Body(randomBytes(1 << 20))
		i := c.Next("POST")
		loc := i.Header.Get("Location")
		start := time.Now()
		_, r := draftRoundTrip(t, "DELETE", loc, hdr{auth(acmeKey), interop(8)}, nil)
		if r.Status != http.StatusNoContent || time.Since(start) > 3*time.Second {
			t.Fatalf("DELETE during the creation: got %d after %v, want 204 within the takeover wait", r.Status, time.Since(start))
		}
		if _, fin := c.Final("POST"); fin.Status != http.StatusNotFound || !strings.Contains(string(fin.Body), `"upload_deleted"`) {
			t.Errorf("the creation in flight: got %d %s, want 404 upload_deleted", fin.Status, fin.Body)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		_, r := draftRoundTrip(t, "POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?0"}, {"Content-Type", "video/mp4"}}, []byte("abc"))
		loc := r.Header.Get("Location")
		if r.Status != http.StatusCreated || loc == "" {
			t.Fatalf("create: got %d %s, want 201 with Location", r.Status, r.Body)
		}
		_, r = draftRoundTrip(t, "DELETE", loc, hdr{auth(acmeKey), interop(8)}, nil)
		if r.Status != http.StatusNoContent {
			t.Fatalf("DELETE: got %d, want 204", r.Status)
		}
		_, r = draftRoundTrip(t, "HEAD", loc, hdr{auth(acmeKey), interop(8)}, nil)
		if r.Status != http.StatusNotFound {
			t.Fatalf("HEAD after DELETE: got %d, want 404", r.Status)
		}
	})
}

// TestIETFInterop3 speaks interop version 3 as iOS 17 / macOS 14
// URLSession does: Upload-Incomplete, a whole file in the creating
// request, resume after the connection dies, and an append without
// Upload-Incomplete that ends the upload.
func TestIETFInterop3(t *testing.T) {
	s := startServer(t)
	ep := s.Endpoint()
	data := randomBytes(5<<20 + 1234)

	c := dialDraft(t, ep)
	c.Start("POST", ep, hdr{auth(acmeKey), interop(3), {"Upload-Incomplete", "?0"},
		{"Content-Type", "video/quicktime"}, {"Content-Length", fmt.Sprint(len(data))}})
	sent := 2 << 20
	c.Body(data[:sent])
	i := c.Next("POST")
	if i.Status != 104 {
		t.Fatalf("after the first bytes: got %d, want 104", i.Status)
	}
	wantHeader(t, "104", i, "Upload-Draft-Interop-Version", "3")
	loc := i.Header.Get("Location")
	time.Sleep(300 * time.Millisecond)
	c.Conn.Close()

	var off int64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, h := draftRoundTrip(t, "HEAD", loc, hdr{auth(acmeKey), interop(3)}, nil)
		if h.Status != http.StatusNoContent {
			t.Fatalf("HEAD: got %d, want 204", h.Status)
		}
		wantHeader(t, "HEAD", h, "Upload-Incomplete", "?1")
		wantHeader(t, "HEAD", h, "Upload-Complete", "")
		if _, err := fmt.Sscan(h.Header.Get("Upload-Offset"), &off); err != nil {
			t.Fatalf("HEAD: Upload-Offset %q: %v", h.Header.Get("Upload-Offset"), err)
		}
		if off == int64(sent) || time.Now().After(deadline) {
			break
		}
	}
	if off != int64(sent) {
		t.Fatalf("offset: got %d, want %d", off, sent)
	}
	// An append that says more follows: 201 with Upload-Incomplete: ?1.
	mid := off + 1<<20
	_, r := draftRoundTrip(t, "PATCH", loc, hdr{auth(acmeKey), interop(3), {"Upload-Incomplete", "?1"},
		{"Upload-Offset", fmt.Sprint(off)}}, data[off:mid])
	if r.Status != http.StatusCreated {
		t.Fatalf("incomplete append: got %d %s, want 201", r.Status, r.Body)
	}
	wantHeader(t, "incomplete append", r, "Upload-Incomplete", "?1")
	wantHeader(t, "incomplete append", r, "Upload-Offset", fmt.Sprint(mid))
	// No Upload-Incomplete: this content ends the upload.
	_, r = draftRoundTrip(t, "PATCH", loc, hdr{auth(acmeKey), interop(3), {"Upload-Offset", fmt.Sprint(mid)}}, data[mid:])
	a := wantAssetReply(t, "last append", r, data)
	wantHeader(t, "last append", r, "Upload-Incomplete", "?0")
	if a.ContentType != "video/quicktime" {
		t.Errorf("content_type: got %q, want video/quicktime", a.ContentType)
	}
	wantReady(t, s, acmeKey, a.ID, data)
}

// TestIETFSharedWithTUS: an upload started over TUS is the same upload
// resource for the draft (offset, append, completion), and TUS sees what
// the draft did.
func TestIETFSharedWithTUS(t *testing.T) {
	s := startServer(t)
	data := randomBytes(3<<20 + 5)
	cr := createUpload(t, s, acmeKey, int64(len(data)))
	if rep := patch(t, cr.Location, acmeKey, 0, data[:1<<20]); rep.Status != http.StatusNoContent {
		t.Fatalf("TUS PATCH: got %d %s", rep.Status, rep.Body)
	}
	_, h := draftRoundTrip(t, "HEAD", cr.Location, hdr{auth(acmeKey), interop(6)}, nil)
	wantHeader(t, "draft HEAD", h, "Upload-Offset", fmt.Sprint(1<<20))
	wantHeader(t, "draft HEAD", h, "Upload-Length", fmt.Sprint(len(data)))
	wantHeader(t, "draft HEAD", h, "Upload-Complete", "?0")
	_, r := draftRoundTrip(t, "PATCH", cr.Location, hdr{auth(acmeKey), interop(6), {"Upload-Complete", "?1"},
		{"Upload-Offset", fmt.Sprint(1 << 20)}, {"Content-Type", "application/partial-upload"}}, data[1<<20:])
	wantAssetReply(t, "draft append", r, data)
	if got := headOffset(t, cr.Location, acmeKey); got != int64(len(data)) {
		t.Errorf("TUS HEAD after the draft's append: got %d, want %d", got, len(data))
	}
	wantReady(t, s, acmeKey, cr.AssetID, data)
}
