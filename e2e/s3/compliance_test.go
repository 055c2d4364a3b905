package s3e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestConcatRepeatsS3: a final upload that lists partial uploads more
// than once (TUS allows it) is their concatenation in the listed order,
// repeats included, on S3: a large partial copied server-side again and a
// small one read through the proxy again.
func TestConcatRepeatsS3(t *testing.T) { eachS3(t, testConcatRepeatsS3) }

func testConcatRepeatsS3(t *testing.T, backend testsvc.S3Backend) {
	gw := startGateway(t, backend)
	srv := startRoughy(t, gw)
	ctx := testCtx(t)
	c := newClient(t, srv, acmeKey)
	a := randomBytes(t, 5*mib+7, 21)
	b := randomBytes(t, 100<<10, 22)
	var locs []string
	for _, part := range [][]byte{a, b} {
		loc, _ := c.create(ctx, int64(len(part)), nil, map[string]string{"Upload-Concat": "partial"})
		c.patchOK(ctx, loc, 0, part)
		locs = append(locs, loc)
	}
	const ct = "audio/mpeg"
	r := c.must(ctx, http.MethodPost, srv.URL+tusPath, nil, map[string]string{
		"Upload-Concat":   "final;" + strings.Join([]string{locs[0], locs[1], locs[0], locs[1], locs[1]}, " "),
		"Upload-Metadata": encodeMetadata(map[string]string{"type": "audio", "content_type": ct}),
	})
	if r.Status != http.StatusCreated {
		t.Fatalf("final POST: %v, want 201", r)
	}
	loc := r.Header.Get("Location")
	id := loc[strings.LastIndexByte(loc, '/')+1:]
	var want []byte
	for _, p := range [][]byte{a, b, a, b, b} {
		want = append(want, p...)
	}
	gw.CheckObject(ctx, objectKey(id), want, ct)
	c.checkReady(ctx, gw, id, want, ct)
	gw.checkNoMultipartUploads(ctx, "after concatenation")
}
