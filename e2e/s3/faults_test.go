package s3e2e

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestClientDropMidPatch announces a 16 MiB body, sends half of it and
// closes the connection. HEAD may then report less than was sent but
// never more, never goes backwards, and resuming from it yields the exact
// source bytes.
func TestClientDropMidPatch(t *testing.T) { eachS3(t, testClientDropMidPatch) }

func testClientDropMidPatch(t *testing.T, backend testsvc.S3Backend) {
	gw := startGateway(t, backend)
	srv := startRoughy(t, gw)
	ctx := testCtx(t)
	c := newClient(t, srv, acmeKey)
	const size = 24 * mib
	src := randomBytes(t, size, 10)
	loc, id := c.create(ctx, size, videoMD("video/mp4"), nil)

	// A first PATCH below the part minimum: the dropped one starts on a
	// stored tail.
	start := c.patchOK(ctx, loc, 0, src[:3*mib])
	const announced, sent = 16 * mib, 8 * mib
	p := c.openRawPatch(loc, start, announced)
	p.write(t, src[start:start+sent])
	time.Sleep(200 * time.Millisecond) // let the bytes leave before the FIN
	p.conn.Close()

	limit := start + sent
	last := start
	// Watch HEAD while the server notices the drop and commits what it
	// made durable.
	waitFor(ctx, 3*time.Second, func() bool {
		off := c.headOffset(ctx, loc)
		if off > limit {
			t.Fatalf("HEAD offset %d after the drop, more than the %d bytes sent", off, limit)
		}
		if off < last {
			t.Fatalf("HEAD offset went back from %d to %d", last, off)
		}
		last = off
		return false
	})
	t.Logf("dropped after %d of %d bytes at offset %d: HEAD says %d (%d of the sent bytes kept)",
		sent, announced, start, last, last-start)

	c.finish(ctx, loc, src, last, 16*mib, 30*time.Second)
	gw.CheckObject(ctx, objectKey(id), src, "video/mp4")
	c.checkReady(ctx, gw, id, src, "video/mp4")
	gw.checkNoMultipartUploads(ctx, "after completion")
	if keys := gw.Objects(ctx, ""); len(keys) != 1 {
		t.Errorf("after completion: bucket holds %q, want only the final object", keys)
	}
}

// TestDeleteMidUpload terminates an upload that has a stored part and a
// tail: the multipart upload is aborted, the tail deleted, the asset gone,
// and a second DELETE is still 204.
func TestDeleteMidUpload(t *testing.T) { eachS3(t, testDeleteMidUpload) }

func testDeleteMidUpload(t *testing.T, backend testsvc.S3Backend) {
	gw := startGateway(t, backend)
	srv := startRoughy(t, gw)
	ctx := testCtx(t)
	c := newClient(t, srv, acmeKey)
	const size = 20 * mib
	src := randomBytes(t, size, 11)
	loc, id := c.create(ctx, size, videoMD("video/mp4"), nil)
	// 8 MiB make a part; 2 more MiB, below the part minimum, a tail.
	c.patchOK(ctx, loc, 0, src[:8*mib])
	c.patchOK(ctx, loc, 8*mib, src[8*mib:10*mib])

	ups, objs := gw.MultipartUploads(ctx), gw.Objects(ctx, "")
	if len(ups) == 0 || len(objs) == 0 {
		t.Errorf("before DELETE: %d multipart uploads, objects %q; want an upload and a tail object", len(ups), objs)
	}
	t.Logf("before DELETE: %d multipart upload(s), objects %q", len(ups), objs)

	// Another account may not delete it; it gets what an unknown id gets.
	other := newClient(t, srv, globexKey)
	if r := other.must(ctx, http.MethodDelete, loc, nil, nil); r.Status != http.StatusNoContent {
		t.Errorf("DELETE by another account: %v, want 204 (as for an unknown id)", r)
	}
	if off := c.headOffset(ctx, loc); off != 10*mib {
		t.Errorf("HEAD after another account's DELETE: offset %d, want %d", off, 10*mib)
	}
	if r := c.must(ctx, http.MethodDelete, loc, nil, nil); r.Status != http.StatusNoContent {
		t.Fatalf("DELETE: %v, want 204", r)
	}
	gw.checkNoMultipartUploads(ctx, "after DELETE")
	if keys := gw.Objects(ctx, ""); len(keys) != 0 {
		t.Errorf("after DELETE: bucket holds %q, want nothing (tails deleted)", keys)
	}
	if st, _ := c.head(ctx, loc); st != http.StatusNotFound && st != http.StatusGone {
		t.Errorf("HEAD after DELETE: %d, want 404 or 410", st)
	}
	if st, _ := c.asset(ctx, id); st != http.StatusNotFound {
		t.Errorf("GET asset after DELETE: %d, want 404", st)
	}
	if r, err := c.patch(ctx, loc, 10*mib, src[10*mib:11*mib], nil); err != nil ||
		(r.Status != http.StatusNotFound && r.Status != http.StatusGone) {
		t.Errorf("PATCH after DELETE: %v %v, want 404 or 410", r, err)
	}
	if r := c.must(ctx, http.MethodDelete, loc, nil, nil); r.Status != http.StatusNoContent {
		t.Errorf("second DELETE: %v, want 204", r)
	}
}

// TestDeleteReadyAsset: DELETE of a ready asset deletes its object, so
// the presigned download_url issued before the DELETE stops working.
func TestDeleteReadyAsset(t *testing.T) { eachS3(t, testDeleteReadyAsset) }

func testDeleteReadyAsset(t *testing.T, backend testsvc.S3Backend) {
	gw := startGateway(t, backend)
	srv := startRoughy(t, gw)
	ctx := testCtx(t)
	c := newClient(t, srv, acmeKey)
	src := randomBytes(t, 2*mib, 14)
	loc, id := c.create(ctx, int64(len(src)), videoMD("video/mp4"), nil)
	c.patchOK(ctx, loc, 0, src)
	c.checkReady(ctx, gw, id, src, "video/mp4") // download_url works
	_, a := c.asset(ctx, id)

	if r := c.must(ctx, http.MethodDelete, loc, nil, nil); r.Status != http.StatusNoContent {
		t.Fatalf("DELETE: %v, want 204", r)
	}
	if keys := gw.Objects(ctx, objectKey(id)); len(keys) != 0 {
		t.Errorf("after DELETE: bucket holds %q, want the object gone", keys)
	}
	resp, err := http.Get(a.DownloadURL)
	if err != nil {
		t.Fatalf("GET download_url issued before the DELETE: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("download_url issued before the DELETE: %d with %d bytes, want it to fail", resp.StatusCode, len(body))
	}
}

// TestExpiry: with --upload-expiry 2s and a 500 ms janitor, an abandoned
// upload answers 410 or 404 and its multipart upload and tail are freed,
// while a completed upload of the same server stays.
func TestExpiry(t *testing.T) { eachS3(t, testExpiry) }

func testExpiry(t *testing.T, backend testsvc.S3Backend) {
	gw := startGateway(t, backend)
	srv := startRoughy(t, gw, "--upload-expiry", "2s", "--janitor-interval", "500ms")
	ctx := testCtx(t)
	c := newClient(t, srv, acmeKey)

	done := randomBytes(t, 1*mib, 12)
	doneLoc, doneID := c.create(ctx, int64(len(done)), videoMD("video/mp4"), nil)
	c.patchOK(ctx, doneLoc, 0, done)

	// The expiry counts from creation: both PATCHes must be done within
	// 2 s, so they are small (a part and a tail).
	src := randomBytes(t, 5*mib+512<<10, 13)
	loc, id := c.create(ctx, 20*mib, videoMD("video/mp4"), nil)
	c.patchOK(ctx, loc, 0, src[:5*mib])
	r, err := c.patch(ctx, loc, 5*mib, src[5*mib:], nil)
	if err != nil || r.Status != http.StatusNoContent {
		t.Fatalf("PATCH of the tail: %v %v, want 204 (a 410 here means the machine took over 2 s for 5.5 MiB)", r, err)
	}
	exp, err := http.ParseTime(r.Header.Get("Upload-Expires"))
	if err != nil {
		t.Errorf("PATCH: Upload-Expires %q: %v", r.Header.Get("Upload-Expires"), err)
	} else if d := time.Until(exp); d > 3*time.Second {
		t.Errorf("PATCH: Upload-Expires in %v, want within the 2s expiry", d)
	}
	if ups, objs := gw.MultipartUploads(ctx), gw.Objects(ctx, objectKey(id)); len(ups) == 0 || len(objs) == 0 {
		t.Errorf("before expiry: %d multipart uploads, objects %q; want an upload and a tail object", len(ups), objs)
	}

	began := time.Now()
	var st int
	if !waitFor(ctx, 20*time.Second, func() bool {
		st, _ = c.head(ctx, loc)
		return st == http.StatusGone || st == http.StatusNotFound
	}) {
		t.Fatalf("HEAD still %d 20s after the upload expired", st)
	}
	t.Logf("HEAD %d %v after the last PATCH", st, time.Since(began).Round(time.Millisecond))
	if !waitFor(ctx, 20*time.Second, func() bool {
		return len(gw.MultipartUploads(ctx)) == 0 && len(gw.Objects(ctx, objectKey(id))) == 0
	}) {
		t.Fatalf("20s after expiry: multipart uploads %d, objects %q; the janitor freed nothing",
			len(gw.MultipartUploads(ctx)), gw.Objects(ctx, objectKey(id)))
	}
	t.Logf("storage freed %v after the last PATCH", time.Since(began).Round(time.Millisecond))
	if r, err := c.patch(ctx, loc, int64(len(src)), src[:mib], nil); err != nil ||
		(r.Status != http.StatusNotFound && r.Status != http.StatusGone) {
		t.Errorf("PATCH after expiry: %v %v, want 404 or 410", r, err)
	}
	// The completed upload is not abandoned.
	gw.CheckObject(ctx, objectKey(doneID), done, "video/mp4")
	c.checkReady(ctx, gw, doneID, done, "video/mp4")
}

// TestStorageDown kills the S3 server between PATCHes and in the middle of
// one: PATCHes answer 503 with Retry-After, HEAD never reports more than
// was stored, and after S3 restarts on the same ports and directory
// the upload resumes to the exact source bytes.
func TestStorageDown(t *testing.T) { eachS3(t, testStorageDown) }

func testStorageDown(t *testing.T, backend testsvc.S3Backend) {
	gw := startOwnGateway(t, backend)
	srv := startRoughy(t, gw)
	ctx := testCtx(t)
	c := newClient(t, srv, acmeKey)
	const size = 32 * mib
	src := randomBytes(t, size, 14)
	loc, id := c.create(ctx, size, videoMD("video/mp4"), nil)
	c.patchOK(ctx, loc, 0, src[:8*mib])                  // a part
	off := c.patchOK(ctx, loc, 8*mib, src[8*mib:10*mib]) // a tail

	// 1. Down between PATCHes.
	gw.Kill()
	began := time.Now()
	// On its own connection, reading the reply while the body goes out:
	// the 503 may come before the body was read (see rawExchange).
	r, werr, err := c.rawExchange(loc, off, src[off:off+6*mib])
	if err != nil {
		t.Fatalf("PATCH with S3 down: no reply: %v (body write: %v), want 503", err, werr)
	}
	if werr != nil {
		t.Logf("PATCH with S3 down: body write failed: %v", werr)
	}
	t.Logf("PATCH with S3 down: %d after %v", r.Status, time.Since(began).Round(time.Millisecond))
	checkUnavailable(t, "PATCH with S3 down", r)
	if h := c.headOffset(ctx, loc); h != off {
		t.Fatalf("HEAD with S3 down: offset %d, want %d (what was acknowledged)", h, off)
	}
	if rr := c.must(ctx, http.MethodGet, srv.URL+"/readyz", nil, nil); rr.Status != http.StatusServiceUnavailable {
		t.Errorf("/readyz with S3 down: %v, want 503", rr)
	}

	gw.Restart()
	c.finish(ctx, loc, src[:16*mib], off, 8*mib, 60*time.Second)
	off = 16 * mib

	// 2. Down in the middle of the last PATCH: 11 of its 16 MiB are sent
	// (parts may be stored and committed by then), S3 dies, then the rest
	// is sent.
	const cut = 11 * mib
	p := c.openRawPatch(loc, off, size-off)
	p.write(t, src[off:off+cut])
	time.Sleep(300 * time.Millisecond)
	gw.Kill()
	began = time.Now()
	if _, err := p.conn.Write(src[off+cut:]); err != nil {
		t.Logf("writing the rest after S3 died: %v (the server may have answered already)", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(p.conn), nil)
	if err != nil {
		t.Errorf("PATCH cut by S3 death: no response: %v", err)
	} else {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		t.Logf("PATCH cut by S3 death: %d after %v", resp.StatusCode, time.Since(began).Round(time.Millisecond))
		checkUnavailable(t, "PATCH cut by S3 death", reply{Status: resp.StatusCode, Header: resp.Header, Body: body})
	}
	p.conn.Close()
	h := c.headOffset(ctx, loc)
	if h < off || h > size {
		t.Fatalf("HEAD after the cut PATCH: offset %d, want between %d and %d", h, off, size)
	}
	if h == size {
		t.Fatalf("HEAD after the cut PATCH: offset %d = Upload-Length, but S3 could not complete the object", h)
	}
	t.Logf("cut PATCH: HEAD says %d of the sent bytes are stored", h-off)

	gw.Restart()
	c.finish(ctx, loc, src, h, 8*mib, 60*time.Second)
	gw.CheckObject(ctx, objectKey(id), src, "video/mp4")
	c.checkReady(ctx, gw, id, src, "video/mp4")
	gw.checkNoMultipartUploads(ctx, "after completion")
	if keys := gw.Objects(ctx, ""); len(keys) != 1 {
		t.Errorf("after completion: bucket holds %q, want only the final object", keys)
	}
}

// checkUnavailable fails unless r is a 503 with a positive Retry-After in
// seconds.
func checkUnavailable(t *testing.T, what string, r reply) {
	t.Helper()
	if r.Status != http.StatusServiceUnavailable {
		t.Errorf("%s: %v, want 503", what, r)
		return
	}
	ra := r.Header.Get("Retry-After")
	if n, err := strconv.Atoi(ra); err != nil || n <= 0 {
		t.Errorf("%s: 503 with Retry-After %q, want a positive number of seconds", what, ra)
	}
}

// TestEarlyRejectionIsDelivered: a PATCH refused before its body is read
// (here a 409 for a wrong offset; a 423 or a 503 from a dead S3 take the
// same path) must reach a plain net/http client as that status, not as a
// connection reset while the client still writes the body. Closing a
// socket with unread input makes the kernel send RST, which can destroy the
// reply in flight (versitygw PR #2345).
func TestEarlyRejectionIsDelivered(t *testing.T) { eachS3(t, testEarlyRejectionIsDelivered) }

func testEarlyRejectionIsDelivered(t *testing.T, backend testsvc.S3Backend) {
	gw := startGateway(t, backend)
	srv := startRoughy(t, gw)
	ctx := testCtx(t)
	c := newClient(t, srv, acmeKey)
	const size = 20 * mib
	src := randomBytes(t, size, 15)
	loc, _ := c.create(ctx, size, videoMD("video/mp4"), nil)
	lost := 0
	const tries = 8
	for i := range tries {
		r, err := c.patch(ctx, loc, 1, src[:12*mib], nil) // offset 1: wrong
		switch {
		case err != nil:
			lost++
			t.Logf("try %d: no reply: %v", i, err)
		case r.Status != http.StatusConflict:
			t.Errorf("try %d: %v, want 409", i, r)
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d early 409 replies to a 12 MiB PATCH were lost to a connection reset", lost, tries)
	}
}
