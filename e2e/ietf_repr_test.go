package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestIETFReprDigestKeepsOffset: the append that completes an upload with
// a wrong Repr-Digest is refused (400) without moving the offset, and the
// upload resumes from there: the same append without a digest, then with
// the right one, completes it.
func TestIETFReprDigestKeepsOffset(t *testing.T) {
	s := startServer(t)
	data := randomBytes(9<<20 + 21)
	half := 4<<20 + 3
	_, r := draftRoundTrip(t, "POST", s.Endpoint(), hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?0"},
		{"Content-Type", "video/mp4"}, {"Upload-Length", fmt.Sprint(len(data))}}, data[:half])
	loc := r.Header.Get("Location")
	if r.Status != http.StatusCreated || loc == "" {
		t.Fatalf("creation with the first half: got %d %s, want 201 with Location", r.Status, r.Body)
	}
	last := func(digest string) testsvc.DraftReply {
		h := hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"}, {"Upload-Offset", fmt.Sprint(half)},
			{"Content-Type", "application/partial-upload"}}
		if digest != "" {
			h = append(h, [2]string{"Repr-Digest", digest})
		}
		_, r := draftRoundTrip(t, "PATCH", loc, h, data[half:])
		return r
	}
	wantOffset := func(what string) {
		t.Helper()
		_, h := draftRoundTrip(t, "HEAD", loc, hdr{auth(acmeKey), interop(8)}, nil)
		if h.Status != http.StatusNoContent || h.Header.Get("Upload-Offset") != fmt.Sprint(half) || h.Header.Get("Upload-Complete") != "?0" {
			t.Fatalf("HEAD %s: got %d %v, want 204 at offset %d, incomplete", what, h.Status, h.Header, half)
		}
	}

	wrong := sfSHA256(data[:len(data)-1])
	for range 2 { // twice: the retry of a refused append is refused the same way
		r = last(wrong)
		if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), `"repr_digest_mismatch"`) ||
			r.Header.Get("Upload-Offset") != fmt.Sprint(half) || r.Header.Get("Upload-Complete") != "?0" {
			t.Fatalf("wrong Repr-Digest: got %d %v %s, want 400 repr_digest_mismatch at offset %d, Upload-Complete: ?0",
				r.Status, r.Header, r.Body, half)
		}
		wantOffset("after the wrong Repr-Digest")
	}
	wantAssetReply(t, "the same append with the right Repr-Digest", last(sfSHA256(data)), data)

	// A Repr-Digest on an append that does not complete the upload is
	// not checked (the draft lets the server verify it at the end only).
	_, r = draftRoundTrip(t, "POST", s.Endpoint(), hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?0"},
		{"Content-Type", "video/mp4"}, {"Upload-Length", fmt.Sprint(len(data))}, {"Repr-Digest", wrong}}, data[:half])
	if r.Status != http.StatusCreated || r.Header.Get("Upload-Offset") != fmt.Sprint(half) {
		t.Fatalf("incomplete creation with a Repr-Digest: got %d %v %s, want 201 at offset %d", r.Status, r.Header, r.Body, half)
	}
	loc = r.Header.Get("Location")
	wantAssetReply(t, "completing append without a digest", last(""), data)
}

// TestIETFReprDigestUnknownLength: completing requests of uploads whose
// length was unknown until they ended.
func TestIETFReprDigestUnknownLength(t *testing.T) {
	s := startServer(t)
	ep := s.Endpoint()
	data := randomBytes(2<<20 + 5)
	wrong := sfSHA256(data[1:])

	t.Run("empty completing append keeps the upload", func(t *testing.T) {
		// The bytes came without a length; the request that ends the
		// upload stores none, so a mismatch leaves it as it was.
		_, r := draftRoundTrip(t, "POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?0"}, {"Content-Type", "video/mp4"}}, data)
		loc := r.Header.Get("Location")
		end := func(digest string) testsvc.DraftReply {
			_, r := draftRoundTrip(t, "PATCH", loc, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"},
				{"Upload-Offset", fmt.Sprint(len(data))}, {"Content-Type", "application/partial-upload"}, {"Repr-Digest", digest}}, []byte{})
			return r
		}
		r = end(wrong)
		if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), `"repr_digest_mismatch"`) ||
			r.Header.Get("Upload-Complete") != "?0" || r.Header.Get("Upload-Offset") != fmt.Sprint(len(data)) {
			t.Fatalf("wrong Repr-Digest: got %d %v %s, want 400 repr_digest_mismatch, incomplete at %d", r.Status, r.Header, r.Body, len(data))
		}
		_, h := draftRoundTrip(t, "HEAD", loc, hdr{auth(acmeKey), interop(8)}, nil)
		if h.Status != http.StatusNoContent || h.Header.Get("Upload-Complete") != "?0" || h.Header.Get("Upload-Length") != "" {
			t.Fatalf("HEAD after the mismatch: got %d %v, want 204, incomplete, no length", h.Status, h.Header)
		}
		wantAssetReply(t, "the end with the right Repr-Digest", end(sfSHA256(data)), data)
	})

	t.Run("empty upload is not created", func(t *testing.T) {
		_, r := draftRoundTrip(t, "POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"}, {"Content-Type", "video/mp4"},
			{"Repr-Digest", wrong}}, []byte{})
		if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), `"repr_digest_mismatch"`) || r.Header.Get("Location") != "" {
			t.Fatalf("empty creation with a wrong Repr-Digest: got %d %v %s, want 400 repr_digest_mismatch, no Location", r.Status, r.Header, r.Body)
		}
		_, r = draftRoundTrip(t, "POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"}, {"Content-Type", "video/mp4"},
			{"Repr-Digest", sfSHA256(nil)}}, []byte{})
		if r.Status != http.StatusOK || r.Header.Get("Upload-Complete") != "?1" {
			t.Fatalf("empty creation with the right Repr-Digest: got %d %s, want 200 with Upload-Complete: ?1", r.Status, r.Body)
		}
		wantAssetReply(t, "empty creation with the right Repr-Digest", r, []byte{})
	})

	// chunked sends data as a chunked body, in chunks of 700,000 bytes.
	chunked := func(t *testing.T, method, target string, h hdr, data []byte) testsvc.DraftReply {
		c := dialDraft(t, target)
		c.Start(method, target, append(h, [2]string{"Transfer-Encoding", "chunked"}))
		for rest := data; len(rest) > 0; {
			part := rest[:min(len(rest), 700000)]
			rest = rest[len(part):]
			c.Body(fmt.Appendf(nil, "%x\r\n", len(part)))
			c.Body(part)
			c.Body([]byte("\r\n"))
		}
		c.Body([]byte("0\r\n\r\n"))
		_, r := c.Final(method)
		return r
	}

	// The length is known when the content ends: the pipeline holds the
	// commits until then. A body of exactly 64 MiB fills its one segment:
	// the server reads ahead to see that it ended there.
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"chunked completing content", data},
		{"chunked completing content of exactly 64 MiB", randomBytes(64 << 20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := chunked(t, "POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"}, {"Content-Type", "video/mp4"},
				{"Repr-Digest", sfSHA256(tc.data[1:])}}, tc.data)
			if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), `"repr_digest_mismatch"`) ||
				r.Header.Get("Upload-Complete") != "?0" || r.Header.Get("Upload-Offset") != "0" {
				t.Fatalf("wrong Repr-Digest: got %d %v %s, want 400 repr_digest_mismatch, incomplete at 0", r.Status, r.Header, r.Body)
			}
			loc := r.Header.Get("Location")
			_, h := draftRoundTrip(t, "HEAD", loc, hdr{auth(acmeKey), interop(8)}, nil)
			if h.Status != http.StatusNoContent || h.Header.Get("Upload-Offset") != "0" || h.Header.Get("Upload-Complete") != "?0" {
				t.Fatalf("HEAD after the mismatch: got %d %v, want 204 at offset 0, incomplete", h.Status, h.Header)
			}
			r = chunked(t, "PATCH", loc, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"}, {"Upload-Offset", "0"},
				{"Content-Type", "application/partial-upload"}, {"Repr-Digest", sfSHA256(tc.data)}}, tc.data)
			a := wantAssetReply(t, "chunked append with the right Repr-Digest", r, tc.data)
			wantReady(t, s, acmeKey, a.ID, tc.data)
		})
	}

	t.Run("chunked completing content past 64 MiB", func(t *testing.T) {
		// The first segment fills 64 MiB and the body goes on: the byte
		// read ahead belongs to the next segment.
		big := randomBytes(64<<20 + 5)
		r := chunked(t, "POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"}, {"Content-Type", "video/mp4"},
			{"Repr-Digest", sfSHA256(big)}}, big)
		a := wantAssetReply(t, "POST", r, big)
		wantReady(t, s, acmeKey, a.ID, big)
	})
}
