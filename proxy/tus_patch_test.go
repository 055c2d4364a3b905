package proxy

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestPatchTooLongCompletes sends a chunked PATCH (no Content-Length, so
// the size check cannot refuse it up front) whose body runs past
// Upload-Length. The sink stores and commits the bytes that fit, which
// bring the offset to exactly the length: the answer is 413, and the
// upload is complete all the same (asset ready, SHA-256 of the allowed
// bytes), as after a normal final PATCH.
func TestPatchTooLongCompletes(t *testing.T) {
	e := newEnv(t, nil, nil)
	data := randomBytes(t, 1000)
	c := e.create("acme", int64(len(data)))
	if r := e.patch("acme", c.Location, 0, data[:400]); r.status != http.StatusNoContent {
		t.Fatalf("first PATCH: %d %s, want 204", r.status, r.body)
	}
	body := append(bytes.Clone(data[400:]), randomBytes(t, 100)...)
	req, err := http.NewRequest("PATCH", c.Location, io.NopCloser(bytes.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = e.tusHdr("acme", "Upload-Offset", "400", "Content-Type", "application/offset+octet-stream")
	req.ContentLength = -1 // chunked
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("chunked PATCH: %v", err)
	}
	rb, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked PATCH past the length: %d %s, want 413", res.StatusCode, rb)
	}
	// No HEAD first: HEAD would finish a full upload by itself.
	r, a := e.getAsset("acme", c.SessionID)
	if r.status != http.StatusOK || a.State != "ready" || a.SHA256 != sha256Hex(data) ||
		a.SizeBytes == nil || *a.SizeBytes != int64(len(data)) {
		t.Fatalf("asset after the 413: %d %s; want ready, %d bytes, sha256 %s", r.status, r.body, len(data), sha256Hex(data))
	}
	sess, err := e.store.Session(t.Context(), c.SessionID)
	if err != nil || !sess.Completed || sess.Offset != int64(len(data)) {
		t.Fatalf("session after the 413: %+v, %v; want completed at %d", sess, err, len(data))
	}
	if got := e.stored(c.SessionID); !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes, want the %d allowed ones", len(got), len(data))
	}
	if h := e.head("acme", c.Location); h.status != http.StatusOK || h.h.Get("Upload-Offset") != "1000" {
		t.Fatalf("HEAD after the 413: %d offset %q, want 200 offset 1000", h.status, h.h.Get("Upload-Offset"))
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
		if n := e.srv.sweep(t.Context(), time.Now()); n != 0 {
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

	// An idle upload still expires UploadExpiry after its last commit.
	idle := e.create("acme", 100)
	if r := e.patch("acme", idle.Location, 0, data[:10]); r.status != http.StatusNoContent {
		t.Fatalf("PATCH of the idle upload: %d %s", r.status, r.body)
	}
	time.Sleep(expiry + 100*time.Millisecond)
	if r := e.patch("acme", idle.Location, 10, data[10:20]); r.status != http.StatusGone {
		t.Fatalf("PATCH after UploadExpiry idle: %d %s, want 410", r.status, r.body)
	}
	if n := e.srv.sweep(t.Context(), time.Now()); n != 1 {
		t.Fatalf("janitor freed %d uploads, want the idle one", n)
	}
}
