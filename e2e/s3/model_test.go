package s3e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestUploadModel runs random upload sequences (TUS and the IETF draft,
// known and deferred lengths, chunks around the part and page edges,
// empty last requests, cut bodies) on S3 with both part layouts, and
// downloads every finished upload to compare it with its source: the
// asset's sha256 is computed on the way in and cannot see an object that
// storage holds short.
func TestUploadModel(t *testing.T) { eachS3(t, testUploadModel) }

func testUploadModel(t *testing.T, backend testsvc.S3Backend) {
	for _, layout := range []string{"default", "equal"} {
		t.Run(layout, func(t *testing.T) {
			t.Parallel()
			gw := startGateway(t, backend)
			r := startRoughy(t, gw, "--s3-layout", layout)
			m := testsvc.UploadModel{Base: r.URL, Key: acmeKey}
			for seed := range uint64(16) {
				m.Run(t, 2000+seed)
			}
		})
	}
}

// TestEmptyLastRequest is the cURL session that stored uploads short: a
// deferred-length upload whose length comes on a PATCH without a body
// after all its bytes (3 MiB, then 17 MiB in two PATCHes), and a draft
// upload of 1 byte ended by an empty Upload-Complete: ?1 append. Each
// must be ready and its download must be the bytes sent.
func TestEmptyLastRequest(t *testing.T) { eachS3(t, testEmptyLastRequest) }

func testEmptyLastRequest(t *testing.T, backend testsvc.S3Backend) {
	ctx := testCtx(t)
	gw := startGateway(t, backend)
	r := startRoughy(t, gw)
	c := newClient(t, r, acmeKey)
	for i, chunks := range [][]int{{3 * mib}, {12 * mib, 5 * mib}} {
		total := 0
		for _, n := range chunks {
			total += n
		}
		src := randomBytes(t, total, uint64(40+i))
		cr := c.must(ctx, http.MethodPost, c.base+tusPath, nil, map[string]string{
			"Upload-Defer-Length": "1", "Upload-Metadata": encodeMetadata(videoMD("video/mp4")),
		})
		if cr.Status != http.StatusCreated {
			t.Fatalf("POST deferred: %v", cr)
		}
		loc := cr.Header.Get("Location")
		var off int64
		for _, n := range chunks {
			off = c.patchOK(ctx, loc, off, src[off:off+int64(n)])
		}
		pr, err := c.patch(ctx, loc, off, nil, map[string]string{"Upload-Length": fmt.Sprint(total)})
		if err != nil || pr.Status != http.StatusNoContent {
			t.Fatalf("empty PATCH with Upload-Length %d: %v %v, want 204", total, pr, err)
		}
		c.checkReady(ctx, gw, loc[strings.LastIndexByte(loc, '/')+1:], src, "video/mp4")
	}

	one := []byte{0x42}
	auth := [2]string{"Authorization", "Bearer " + acmeKey}
	_, cr := testsvc.DraftRoundTrip(t, http.MethodPost, r.URL+tusPath, testsvc.Hdr{auth,
		{"Upload-Draft-Interop-Version", "8"}, {"Upload-Complete", "?0"}, {"Content-Type", "video/mp4"}}, one)
	if cr.Status != http.StatusCreated {
		t.Fatalf("draft POST of 1 byte: %d %s", cr.Status, cr.Body)
	}
	loc := cr.Header.Get("Location")
	_, ar := testsvc.DraftRoundTrip(t, http.MethodPatch, loc, testsvc.Hdr{auth,
		{"Upload-Draft-Interop-Version", "8"}, {"Upload-Complete", "?1"}, {"Upload-Offset", "1"},
		{"Content-Type", "application/partial-upload"}}, []byte{})
	if ar.Status/100 != 2 {
		t.Fatalf("empty completing append: %d %s", ar.Status, ar.Body)
	}
	c.checkReady(ctx, gw, loc[strings.LastIndexByte(loc, '/')+1:], one, "video/mp4")
}
