package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestIETFBadInput: each refusal of the draft's front door, as a problem
// (RFC 9457) with the status the README's table gives.
func TestIETFBadInput(t *testing.T) {
	s := startServer(t)
	ep := s.Endpoint()
	_, r := draftRoundTrip(t, "POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?0"},
		{"Content-Type", "video/mp4"}, {"Upload-Length", "100"}}, []byte("0123456789"))
	loc := r.Header.Get("Location")
	if r.Status != http.StatusCreated || loc == "" {
		t.Fatalf("create: got %d %s, want 201", r.Status, r.Body)
	}
	mp4 := [2]string{"Content-Type", "video/mp4"}
	partial := [2]string{"Content-Type", "application/partial-upload"}
	cases := []struct {
		name, method, target string
		h                    hdr
		body                 []byte
		status               int
		code, problemType    string
		header               [2]string // a header the answer must carry
	}{
		{"interop 4 is not served", "POST", ep, hdr{auth(acmeKey), interop(4), {"Upload-Complete", "?1"}, mp4}, []byte("x"),
			412, "unsupported_tus_version", "", [2]string{"Tus-Version", "1.0.0"}},
		{"interop 9 is not served", "HEAD", loc, hdr{auth(acmeKey), interop(9)}, nil,
			412, "", "", [2]string{"Tus-Version", "1.0.0"}},
		{"creation without Upload-Complete", "POST", ep, hdr{auth(acmeKey), interop(8), mp4}, []byte("x"),
			400, "missing_upload_complete", "about:blank", [2]string{}},
		{"interop 3 creation with Upload-Complete", "POST", ep, hdr{auth(acmeKey), interop(3), {"Upload-Complete", "?1"}, mp4}, []byte("x"),
			400, "missing_upload_complete", "about:blank", [2]string{}},
		{"Upload-Complete not a boolean", "POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "yes"}, mp4}, []byte("x"),
			400, "missing_upload_complete", "about:blank", [2]string{}},
		{"Upload-Length and the content disagree", "POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"}, {"Upload-Length", "10"}, mp4}, []byte("12345"),
			400, "inconsistent_length", "https://iana.org/assignments/http-problem-types#inconsistent-upload-length", [2]string{"Upload-Complete", "?0"}},
		{"kind unknown", "POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"}, {"Content-Type", "application/octet-stream"}}, []byte("x"),
			400, "invalid_metadata", "about:blank", [2]string{}},
		{"query type not video or audio", "POST", ep + "?type=image", hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"}}, []byte("x"),
			400, "invalid_metadata", "about:blank", [2]string{}},
		{"Upload-Length over 50 GiB", "POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?0"}, {"Upload-Length", "53687091201"}, mp4}, []byte{},
			413, "upload_too_large", "about:blank", [2]string{"Upload-Limit", "max-size=53687091200, max-append-size=67108864, max-age=86400"}},
		{"Upload-Length not a number", "POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?0"}, {"Upload-Length", "-1"}, mp4}, []byte{},
			400, "invalid_length", "about:blank", [2]string{}},
		{"no API key", "POST", ep, hdr{interop(8), {"Upload-Complete", "?1"}, mp4}, []byte("x"),
			401, "unauthorized", "about:blank", [2]string{"WWW-Authenticate", `Bearer realm="roughy"`}},
		{"another account's upload", "HEAD", loc, hdr{auth(globexKey), interop(8)}, nil,
			404, "not_found", "about:blank", [2]string{}},
		{"GET on the creation URL", "GET", ep, hdr{auth(acmeKey), interop(8)}, nil,
			405, "method_not_allowed", "about:blank", [2]string{"Allow", "OPTIONS, POST, PUT"}},
		{"interop 6 append not partial-upload", "PATCH", loc, hdr{auth(acmeKey), interop(6), {"Upload-Complete", "?0"}, {"Upload-Offset", "10"}, {"Content-Type", "application/offset+octet-stream"}}, []byte("x"),
			415, "unsupported_content_type", "about:blank", [2]string{}},
		{"interop 5 append without Upload-Complete", "PATCH", loc, hdr{auth(acmeKey), interop(5), {"Upload-Offset", "10"}}, []byte("x"),
			400, "missing_upload_complete", "about:blank", [2]string{}},
		{"append without Upload-Offset", "PATCH", loc, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?0"}, partial}, []byte("x"),
			400, "invalid_offset", "about:blank", [2]string{}},
		{"append with another length", "PATCH", loc, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?0"}, {"Upload-Offset", "10"}, {"Upload-Length", "99"}, partial}, []byte("x"),
			400, "inconsistent_length", "https://iana.org/assignments/http-problem-types#inconsistent-upload-length", [2]string{}},
		{"ending append short of the length", "PATCH", loc, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"}, {"Upload-Offset", "10"}, partial}, []byte("x"),
			400, "inconsistent_length", "https://iana.org/assignments/http-problem-types#inconsistent-upload-length", [2]string{}},
		{"append past the length", "PATCH", loc, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?0"}, {"Upload-Offset", "10"}, partial}, make([]byte, 91),
			413, "past_upload_length", "about:blank", [2]string{"Upload-Limit", "max-size=53687091200, max-append-size=67108864, max-age=86400"}},
		{"append at a stale offset", "PATCH", loc, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?0"}, {"Upload-Offset", "3"}, partial}, []byte("x"),
			409, "offset_mismatch", "https://iana.org/assignments/http-problem-types#mismatching-upload-offset", [2]string{"Upload-Offset", "10"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, r := draftRoundTrip(t, c.method, c.target, c.h, c.body)
			if r.Status != c.status {
				t.Fatalf("got %d %s, want %d", r.Status, r.Body, c.status)
			}
			if c.header[0] == "Upload-Limit" {
				// max-age is the upload's remaining life: a second may
				// have gone since its creation.
				wantLimit(t, c.name, r)
			} else if c.header[0] != "" && r.Header.Get(c.header[0]) != c.header[1] {
				t.Errorf("%s: got %q, want %q", c.header[0], r.Header.Get(c.header[0]), c.header[1])
			}
			if c.problemType == "" || c.method == "HEAD" {
				return
			}
			var p struct {
				Type   string `json:"type"`
				Status int    `json:"status"`
				Code   string `json:"code"`
				Detail string `json:"detail"`
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type: got %q, want application/problem+json", ct)
			}
			if err := json.Unmarshal(r.Body, &p); err != nil || p.Type != c.problemType || p.Status != c.status || p.Code != c.code || p.Detail == "" {
				t.Errorf("problem: got %s (%v), want type %s, status %d, code %s and a detail", r.Body, err, c.problemType, c.status, c.code)
			}
			if c.code == "invalid_metadata" && c.name == "kind unknown" && !strings.Contains(p.Detail, "?type=video") {
				t.Errorf("detail %q does not say how to send the kind", p.Detail)
			}
		})
	}
	// None of the refused appends moved the upload.
	_, h := draftRoundTrip(t, "HEAD", loc, hdr{auth(acmeKey), interop(8)}, nil)
	if h.Header.Get("Upload-Offset") != "10" {
		t.Errorf("offset after the refusals: got %q, want 10", h.Header.Get("Upload-Offset"))
	}
}

// TestIETFExpectContinue: a draft creation with Expect: 100-continue gets
// 100 Continue (the draft keeps it), then its 104, then the asset; one
// that is sure to be refused gets its problem instead of the 100.
func TestIETFExpectContinue(t *testing.T) {
	s := startServer(t)
	ep := s.Endpoint()
	data := randomBytes(100 << 10)
	c := dialDraft(t, ep)
	c.Start("POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"}, {"Content-Type", "audio/mpeg"},
		{"Expect", "100-continue"}, {"Content-Length", fmt.Sprint(len(data))}})
	if r := c.Next("POST"); r.Status != http.StatusContinue {
		t.Fatalf("first answer: got %d, want 100", r.Status)
	}
	c.Body(data)
	interim, r := c.Final("POST")
	if len(interim) != 1 || interim[0].Status != 104 || interim[0].Header.Get("Location") == "" {
		t.Fatalf("after 100: got %+v, want one 104 with Location", interim)
	}
	a := wantAssetReply(t, "POST", r, data)
	if a.Type != "audio" {
		t.Errorf("type: got %q, want audio", a.Type)
	}

	c = dialDraft(t, ep)
	c.Start("POST", ep, hdr{auth("rk_live_nosuchkey"), interop(8), {"Upload-Complete", "?1"}, {"Content-Type", "video/mp4"},
		{"Expect", "100-continue"}, {"Content-Length", "1000000"}})
	r = c.Next("POST")
	if r.Status != http.StatusUnauthorized || r.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("refused creation: got %d %q, want 401 application/problem+json before any body", r.Status, r.Header.Get("Content-Type"))
	}
}

// TestIETFLongContent: content longer than the 64 MiB of one TUS request
// (a whole file from a client that predates Upload-Limit) is taken in
// segments, with a 104 carrying the offset after each.
func TestIETFLongContent(t *testing.T) {
	s := startServer(t)
	data := randomBytes(64<<20 + 1<<20 + 7)
	interim, r := draftRoundTrip(t, "POST", s.Endpoint(), hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"},
		{"Content-Type", "video/mp4"}}, data)
	if len(interim) != 2 || interim[0].Header.Get("Location") == "" || interim[1].Header.Get("Upload-Offset") != fmt.Sprint(64<<20) ||
		interim[1].Header.Get("Location") != "" || interim[1].Header.Get("Upload-Draft-Interop-Version") != "8" {
		t.Fatalf("interim responses: got %+v, want a 104 with Location, then one with Upload-Offset %d and no Location", interim, 64<<20)
	}
	a := wantAssetReply(t, "POST", r, data)
	wantReady(t, s, acmeKey, a.ID, data)
}

// sfSHA256 is the RFC 9530 digest field value of b's SHA-256.
func sfSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
}

// TestIETFDigests: Content-Digest is verified while the content streams
// (a mismatch stores nothing); Repr-Digest is checked against the whole
// upload when it completes (a mismatch fails and deletes the upload).
func TestIETFDigests(t *testing.T) {
	s := startServer(t)
	ep := s.Endpoint()
	data := randomBytes(3<<20 + 11)
	_, r := draftRoundTrip(t, "POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?0"}, {"Content-Type", "video/mp4"}}, []byte{})
	loc := r.Header.Get("Location")
	app := func(offset int, part []byte, done string, extra ...[2]string) testsvc.DraftReply {
		_, r := draftRoundTrip(t, "PATCH", loc, append(hdr{auth(acmeKey), interop(8), {"Upload-Complete", done},
			{"Upload-Offset", fmt.Sprint(offset)}, {"Content-Type", "application/partial-upload"}}, extra...), part)
		return r
	}
	half := len(data) / 2
	if r := app(0, data[:half], "?0", [2]string{"Content-Digest", sfSHA256(data[1 : half+1])}); r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), `"digest_mismatch"`) {
		t.Fatalf("wrong Content-Digest: got %d %s, want 400 digest_mismatch", r.Status, r.Body)
	}
	if r := app(0, data[:half], "?0", [2]string{"Content-Digest", "sha-256=:nope:"}); r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), `"invalid_digest"`) {
		t.Fatalf("malformed Content-Digest: got %d %s, want 400 invalid_digest", r.Status, r.Body)
	}
	// One algorithm twice with different values: the first member (what
	// a naive parser keeps) is right, the last (what a structured-field
	// parser keeps) is wrong. Either way the client and the server could
	// disagree on what was checked: refused.
	for _, name := range []string{"Content-Digest", "Repr-Digest"} {
		twice := sfSHA256(data[:half]) + ", " + sfSHA256(data[1:half+1])
		if r := app(0, data[:half], "?0", [2]string{name, twice}); r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), `"invalid_digest"`) {
			t.Fatalf("%s with sha-256 twice, different values: got %d %s, want 400 invalid_digest", name, r.Status, r.Body)
		}
	}
	_, h := draftRoundTrip(t, "HEAD", loc, hdr{auth(acmeKey), interop(8)}, nil)
	if h.Header.Get("Upload-Offset") != "0" {
		t.Fatalf("offset after the refused digests: got %q, want 0", h.Header.Get("Upload-Offset"))
	}
	if r := app(0, data[:half], "?0", [2]string{"Content-Digest", "sha-512=:AAAA:, " + sfSHA256(data[:half])}); r.Status != http.StatusNoContent {
		t.Fatalf("right Content-Digest: got %d %s, want 204", r.Status, r.Body)
	}
	r = app(half, data[half:], "?1", [2]string{"Repr-Digest", sfSHA256(data)}, [2]string{"Content-Digest", sfSHA256(data[half:])})
	wantAssetReply(t, "append with the right Repr-Digest", r, data)

	// A whole file whose Repr-Digest is wrong: nothing of it is stored,
	// the upload stays at offset 0, and the same content sent again with
	// its own digest completes it.
	other := randomBytes(1<<20 + 3)
	_, r = draftRoundTrip(t, "POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"}, {"Content-Type", "video/mp4"},
		{"Repr-Digest", sfSHA256(data)}}, other)
	if r.Status != http.StatusBadRequest || r.Header.Get("Upload-Complete") != "?0" || r.Header.Get("Upload-Offset") != "0" ||
		!strings.Contains(string(r.Body), `"repr_digest_mismatch"`) {
		t.Fatalf("wrong Repr-Digest: got %d %v %s, want 400 repr_digest_mismatch with Upload-Complete: ?0, Upload-Offset: 0", r.Status, r.Header, r.Body)
	}
	loc = r.Header.Get("Location")
	_, h = draftRoundTrip(t, "HEAD", loc, hdr{auth(acmeKey), interop(8)}, nil)
	if h.Status != http.StatusNoContent || h.Header.Get("Upload-Offset") != "0" || h.Header.Get("Upload-Complete") != "?0" {
		t.Fatalf("HEAD after the wrong Repr-Digest: got %d %v, want 204 at offset 0, incomplete", h.Status, h.Header)
	}
	r = app(0, other, "?1", [2]string{"Repr-Digest", sfSHA256(other)})
	wantAssetReply(t, "the file again with its Repr-Digest", r, other)

	// Content-Digest over max-append-size is refused before the content.
	c := dialDraft(t, ep)
	c.Start("POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"}, {"Content-Type", "video/mp4"},
		{"Content-Digest", sfSHA256(nil)}, {"Expect", "100-continue"}, {"Content-Length", fmt.Sprint(64<<20 + 1)}})
	if r := c.Next("POST"); r.Status != http.StatusRequestEntityTooLarge || r.Header.Get("Upload-Limit") == "" {
		t.Fatalf("Content-Digest over 64 MiB: got %d %v, want 413 with Upload-Limit", r.Status, r.Header)
	}
}
