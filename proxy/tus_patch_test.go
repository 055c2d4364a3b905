package proxy

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chunkedPatch sends body as a chunked PATCH (no Content-Length, so no
// size check can refuse it up front) at offset.
func (e *env) chunkedPatch(loc string, offset int64, body []byte) resp {
	e.t.Helper()
	h := e.tusHdr("acme", "Upload-Offset", strconv.FormatInt(offset, 10), "Content-Type", "application/offset+octet-stream")
	return e.chunked("PATCH", loc, h, body)
}

// chunked sends body with Transfer-Encoding: chunked.
func (e *env) chunked(method, loc string, h http.Header, body []byte) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, loc, io.NopCloser(bytes.NewReader(body)))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header = h
	req.ContentLength = -1
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("chunked %s: %v", method, err)
	}
	defer res.Body.Close()
	rb, _ := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, h: res.Header, body: rb}
}

// wantIncomplete checks that the upload id stands at offset, not
// completed, and its asset (if any) still uploading.
func (e *env) wantIncomplete(id string, offset int64) {
	e.t.Helper()
	sess, err := e.store.Session(e.t.Context(), id)
	if err != nil || sess.Completed || sess.Offset != offset {
		e.t.Fatalf("session: %+v, %v; want not completed at offset %d", sess, err, offset)
	}
	if r, a := e.getAsset("acme", id); r.status != http.StatusOK || a.State != "uploading" {
		e.t.Fatalf("asset: %d %s; want uploading", r.status, r.body)
	}
}

// TestPatchTooLongCompletesNothing sends a chunked PATCH whose body runs
// past Upload-Length. The sink stores and commits the bytes that fit,
// which bring the offset to the length, and the answer is 413
// past_upload_length: the failed request completes nothing. A request
// that succeeds, here an empty PATCH at the final offset, completes it.
func TestPatchTooLongCompletesNothing(t *testing.T) {
	e := newEnv(t, nil, nil)
	data := randomBytes(t, 1000)
	c := e.create("acme", int64(len(data)))
	if r := e.patch("acme", c.Location, 0, data[:400]); r.status != http.StatusNoContent {
		t.Fatalf("first PATCH: %d %s, want 204", r.status, r.body)
	}
	r := e.chunkedPatch(c.Location, 400, append(bytes.Clone(data[400:]), randomBytes(t, 100)...))
	if r.status != http.StatusRequestEntityTooLarge || r.errorCode() != "past_upload_length" {
		t.Fatalf("chunked PATCH past the length: %d %s, want 413 past_upload_length", r.status, r.body)
	}
	// No HEAD first: HEAD would finish a full upload by itself.
	e.wantIncomplete(c.SessionID, int64(len(data)))
	if got := e.stored(c.SessionID); !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes, want the %d allowed ones", len(got), len(data))
	}
	if r := e.patch("acme", c.Location, int64(len(data)), nil); r.status != http.StatusNoContent || r.h.Get("Upload-Offset") != "1000" {
		t.Fatalf("empty PATCH at the end: %d %q %s, want 204 offset 1000", r.status, r.h.Get("Upload-Offset"), r.body)
	}
	if r, a := e.getAsset("acme", c.SessionID); a.State != "ready" || a.SHA256 != sha256Hex(data) {
		t.Fatalf("asset after the empty PATCH: %d %s; want ready, sha256 %s", r.status, r.body, sha256Hex(data))
	}
	e.wantReady("acme", c.SessionID, data)
}

// TestPostTooLongCompletesNothing: the same rule for a chunked POST with
// data (creation-with-upload).
func TestPostTooLongCompletesNothing(t *testing.T) {
	e := newEnv(t, nil, nil)
	data := randomBytes(t, 500)
	h := e.tusHdr("acme", "Upload-Length", "400", "Upload-Metadata", md("type", "video"),
		"Content-Type", "application/offset+octet-stream")
	r := e.chunked("POST", e.url+uploadsPath, h, data)
	if r.status != http.StatusRequestEntityTooLarge || r.errorCode() != "past_upload_length" {
		t.Fatalf("chunked POST past the length: %d %s, want 413 past_upload_length", r.status, r.body)
	}
	loc := r.h.Get("Location")
	if loc == "" {
		t.Fatal("413 of a POST that created an upload has no Location")
	}
	e.wantIncomplete(loc[strings.LastIndexByte(loc, '/')+1:], 400)
}

// TestChunkedPatchOverCap: a chunked PATCH over 64 MiB on an upload with
// more room than that is refused with chunk_too_large (the limit it ran
// past), keeps what fit and completes nothing, like any overflow.
func TestChunkedPatchOverCap(t *testing.T) {
	e := newEnv(t, nil, nil)
	const limit = 64 << 20
	for _, length := range []int64{100 << 20, -1} {
		c := e.create("acme", length)
		r := e.chunkedPatch(c.Location, 0, make([]byte, limit+1))
		if r.status != http.StatusRequestEntityTooLarge || r.errorCode() != "chunk_too_large" {
			t.Fatalf("length %d: chunked PATCH of 64 MiB + 1: %d %s, want 413 chunk_too_large", length, r.status, r.body)
		}
		e.wantIncomplete(c.SessionID, limit)
	}
	// Exactly 64 MiB left: the body runs past the upload's length first.
	c := e.create("acme", limit)
	if r := e.chunkedPatch(c.Location, 0, make([]byte, limit+1)); r.status != http.StatusRequestEntityTooLarge || r.errorCode() != "past_upload_length" {
		t.Fatalf("chunked PATCH of 64 MiB + 1 into 64 MiB: %d %s, want 413 past_upload_length", r.status, r.body)
	}
}

// TestExpirySlides: UploadExpiry counts from an upload's last commit, not
// from its creation. An upload whose PATCHes keep coming is neither
// refused (410) nor swept by the janitor after UploadExpiry in total, and
// Upload-Expires of PATCH and HEAD is the stored, moved expiry.
func TestExpirySlides(t *testing.T) {
	const expiry = 1500 * time.Millisecond
	e := newEnv(t, func(c *Config) { c.UploadExpiry = expiry }, nil)
	data := randomBytes(t, 300)
	c := e.create("acme", int64(len(data)))
	created, err := e.store.Session(t.Context(), c.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		time.Sleep(expiry * 2 / 3)
		// By the last round, more than UploadExpiry passed since creation.
		if n := e.srv.svc.Sweep(t.Context(), time.Now()); n != 0 {
			t.Fatalf("round %d: janitor freed %d uploads, want 0 (the upload is active)", i, n)
		}
		before := time.Now()
		off := int64(i * 100)
		r := e.patch("acme", c.Location, off, data[off:off+100])
		if i == 2 {
			// The final PATCH completes: no Upload-Expires then.
			if r.status != http.StatusNoContent || r.h.Get("Upload-Offset") != "300" {
				t.Fatalf("last PATCH: %d %s, want 204 offset 300", r.status, r.body)
			}
			break
		}
		if r.status != http.StatusNoContent {
			t.Fatalf("PATCH %d, %v after creation: %d %s; want 204", i, time.Since(created.CreatedAt), r.status, r.body)
		}
		sess, err := e.store.Session(t.Context(), c.SessionID)
		if err != nil {
			t.Fatal(err)
		}
		if sess.ExpiresAt.Before(before.Add(expiry)) || sess.ExpiresAt.After(time.Now().Add(expiry)) {
			t.Fatalf("PATCH %d: stored ExpiresAt %v, want UploadExpiry after the commit (%v..%v)",
				i, sess.ExpiresAt, before.Add(expiry), time.Now().Add(expiry))
		}
		want := sess.ExpiresAt.UTC().Format(httpTime)
		if got := r.h.Get("Upload-Expires"); got != want {
			t.Fatalf("PATCH %d: Upload-Expires %q, want the stored %q", i, got, want)
		}
		if h := e.head("acme", c.Location); h.status != http.StatusOK || h.h.Get("Upload-Expires") != want ||
			h.h.Get("Upload-Offset") != strconv.FormatInt(off+100, 10) {
			t.Fatalf("HEAD after PATCH %d: %d expires %q offset %q; want 200 %q %d", i, h.status,
				h.h.Get("Upload-Expires"), h.h.Get("Upload-Offset"), want, off+100)
		}
	}
	if _, a := e.getAsset("acme", c.SessionID); a.State != "ready" || a.SHA256 != sha256Hex(data) {
		t.Fatalf("asset after the last PATCH: %+v, want ready with sha256 %s", a, sha256Hex(data))
	}
	e.wantReady("acme", c.SessionID, data)

	// An idle upload still expires UploadExpiry after its last commit.
	idle := e.create("acme", 100)
	if r := e.patch("acme", idle.Location, 0, data[:10]); r.status != http.StatusNoContent {
		t.Fatalf("PATCH of the idle upload: %d %s", r.status, r.body)
	}
	time.Sleep(expiry + 100*time.Millisecond)
	if r := e.patch("acme", idle.Location, 10, data[10:20]); r.status != http.StatusGone {
		t.Fatalf("PATCH after UploadExpiry idle: %d %s, want 410", r.status, r.body)
	}
	if n := e.srv.svc.Sweep(t.Context(), time.Now()); n != 1 {
		t.Fatalf("janitor freed %d uploads, want the idle one", n)
	}
}
