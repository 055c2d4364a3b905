package s3e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/roughy/ingest/internal/testsvc"
)

// s3Calls is how many S3 requests of each multipart and put operation a
// node made, from its /metrics.
func s3Calls(t *testing.T, r *roughy) map[string]float64 {
	t.Helper()
	m := testsvc.ScrapeMetrics(t, r.URL+"/metrics")
	out := map[string]float64{}
	for _, op := range []string{"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload"} {
		out[op], _ = m.Sum("roughy_s3_request_duration_seconds_count", fmt.Sprintf("operation=%q", op))
	}
	return out
}

// wantCalls fails unless the node made exactly want's requests since
// before (operations not in want: none).
func wantCalls(t *testing.T, what string, r *roughy, before map[string]float64, want map[string]float64) map[string]float64 {
	t.Helper()
	after := s3Calls(t, r)
	for op, v := range after {
		if d := v - before[op]; d != want[op] {
			t.Errorf("%s: %v %s requests, want %v", what, d, op, want[op])
		}
	}
	return after
}

// TestSmallUploadOnePut: an upload whose whole body comes in one request
// within one part (creation with upload, or a single PATCH) is stored
// with one PutObject and no multipart request, and downloads as sent;
// DELETE removes the object. An upload sent in two PATCHes is still a
// multipart upload. On bbolt sessions and on Redis (the fleet).
func TestSmallUploadOnePut(t *testing.T) {
	eachS3(t, func(t *testing.T, backend testsvc.S3Backend) {
		gw := startGateway(t, backend)
		t.Run("bbolt", func(t *testing.T) { smallUploadOnePut(t, gw, startRoughy(t, gw)) })
		t.Run("redis", func(t *testing.T) {
			srv := startRoughy(t, gw, "--sessions", "redis", "--redis-url", testsvc.StartRedis(t))
			smallUploadOnePut(t, gw, srv)
		})
	})
}

func smallUploadOnePut(t *testing.T, gw *gateway, srv *roughy) {
	ctx := testCtx(t)
	c := newClient(t, srv, acmeKey)
	const ct = "video/mp4"
	calls := s3Calls(t, srv)

	// Creation with upload.
	src := randomBytes(t, 1*mib+7, 51)
	r := c.must(ctx, http.MethodPost, c.base+tusPath, src, map[string]string{
		"Upload-Length": fmt.Sprint(len(src)), "Upload-Metadata": encodeMetadata(videoMD(ct)),
		"Content-Type": "application/offset+octet-stream",
	})
	if r.Status != http.StatusCreated || r.Header.Get("Upload-Offset") != fmt.Sprint(len(src)) {
		t.Fatalf("POST with the whole upload: %v, want 201 at offset %d", r, len(src))
	}
	loc := r.Header.Get("Location")
	id := loc[strings.LastIndexByte(loc, '/')+1:]
	calls = wantCalls(t, "creation with upload", srv, calls, map[string]float64{"PutObject": 1})
	c.checkReady(ctx, gw, id, src, ct)
	gw.CheckObject(ctx, objectKey(id), src, ct)

	// Creation, then one PATCH of everything.
	src2 := randomBytes(t, 3*mib+1, 52)
	loc2, id2 := c.create(ctx, int64(len(src2)), videoMD(ct), nil)
	c.patchOK(ctx, loc2, 0, src2)
	calls = wantCalls(t, "one PATCH", srv, calls, map[string]float64{"PutObject": 1})
	c.checkReady(ctx, gw, id2, src2, ct)

	// Two PATCHes: a multipart upload, its first PATCH's bytes a tail.
	src3 := randomBytes(t, 2*mib+3, 53)
	loc3, id3 := c.create(ctx, int64(len(src3)), videoMD(ct), nil)
	off := c.patchOK(ctx, loc3, 0, src3[:mib])
	c.patchOK(ctx, loc3, off, src3[mib:])
	calls = wantCalls(t, "two PATCHes", srv, calls, map[string]float64{
		"PutObject": 1, "CreateMultipartUpload": 1, "UploadPart": 1, "CompleteMultipartUpload": 1,
	})
	c.checkReady(ctx, gw, id3, src3, ct)
	gw.checkNoMultipartUploads(ctx, "after completion")

	// DELETE of a put upload removes its object.
	if r := c.must(ctx, http.MethodDelete, loc, nil, nil); r.Status != http.StatusNoContent {
		t.Fatalf("DELETE: %v, want 204", r)
	}
	if objs := gw.Objects(ctx, objectKey(id)); len(objs) != 0 {
		t.Fatalf("after DELETE: objects %q left", objs)
	}
	wantCalls(t, "DELETE", srv, calls, map[string]float64{})
}

// TestDeleteWhilePutInFlight: a DELETE that goes ahead after the
// takeover wait while the PATCH it took over has its PutObject in flight
// (the body sent whole, S3 slow to answer) leaves no object once the put
// landed.
func TestDeleteWhilePutInFlight(t *testing.T) {
	gw := startGateway(t, testsvc.Versitygw) // behind the holding proxy
	s3 := startHeldS3(t, gw)
	srv := startRoughy(t, gw, "--s3-endpoint", s3.URL, "--takeover-wait", "500ms")
	ctx := testCtx(t)
	c := newClient(t, srv, acmeKey)
	const size = 2 * mib
	src := randomBytes(t, size, 54)
	loc, id := c.create(ctx, size, videoMD("video/mp4"), nil)

	s3.armed.Store(true)
	p := c.openRawPatch(loc, 0, size)
	p.write(t, src)
	select { // the object is whole at "S3", which does not answer yet
	case <-s3.received:
	case <-ctx.Done():
		t.Fatal("no put reached S3")
	}
	if r := c.must(ctx, http.MethodDelete, loc, nil, nil); r.Status != http.StatusNoContent {
		t.Fatalf("DELETE: %v, want 204", r)
	}
	s3.release()
	res, err := http.ReadResponse(bufio.NewReader(p.conn), nil)
	if err != nil {
		t.Fatalf("PATCH reply: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("PATCH taken over by the DELETE: %d, want 404", res.StatusCode)
	}
	if objs := gw.Objects(context.WithoutCancel(ctx), objectKey(id)); len(objs) != 0 {
		t.Errorf("after the DELETE and the late put: objects %q left, want none", objs)
	}
	gw.checkNoMultipartUploads(ctx, "after the DELETE and the late put")
}
