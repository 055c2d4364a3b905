package s3e2e

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/roughy/ingest/internal/testsvc"
)

// TestFullUpload sends a 40 MiB file in uneven PATCHes (5 MiB + 1, 7 MiB,
// 16 MiB, the rest: parts and tails of every kind) and checks the object in
// the bucket, the asset and its presigned download.
func TestFullUpload(t *testing.T) { eachS3(t, testFullUpload) }

func testFullUpload(t *testing.T, backend testsvc.S3Backend) {
	gw := startGateway(t, backend)
	fullUpload(t, gw, startRoughy(t, gw))
}

// TestFullUploadRedis is TestFullUpload in fleet mode: sessions in a real
// Redis, two roughy nodes, and each PATCH goes to the other node than the
// one before (no stickiness).
func TestFullUploadRedis(t *testing.T) {
	redisURL := testsvc.StartRedis(t)
	gw := startGateway(t, testsvc.Versitygw)
	args := []string{"--sessions", "redis", "--redis-url", redisURL}
	fullUpload(t, gw, startRoughy(t, gw, args...), startRoughy(t, gw, args...))
}

// fullUpload creates the upload on nodes[0] and sends PATCH i to node
// i mod len(nodes).
func fullUpload(t *testing.T, gw *gateway, nodes ...*roughy) {
	ctx := testCtx(t)
	clients := make([]*client, len(nodes))
	for i, n := range nodes {
		clients[i] = newClient(t, n, acmeKey)
	}
	c := clients[0]
	const size = 40 * mib
	src := randomBytes(t, size, 1)
	const ct = "video/mp4"
	loc0, id := c.create(ctx, size, videoMD(ct), nil)
	path := loc0[strings.Index(loc0, tusPath):]

	chunks := []int{5*mib + 1, 7 * mib, 16 * mib}
	chunks = append(chunks, size-(5*mib+1)-7*mib-16*mib)
	var off int64
	start := time.Now()
	for i, n := range chunks {
		c, loc := clients[i%len(nodes)], nodes[i%len(nodes)].URL+path
		off = c.patchOK(ctx, loc, off, src[off:off+int64(n)])
		// HEAD on the next node.
		next, nloc := clients[(i+1)%len(nodes)], nodes[(i+1)%len(nodes)].URL+path
		if h := next.headOffset(ctx, nloc); h != off {
			t.Fatalf("after PATCH %d: HEAD offset %d, want %d", i, h, off)
		}
		if i < len(chunks)-1 {
			if st, a := next.asset(ctx, id); st != http.StatusOK || a.State != "uploading" {
				t.Errorf("after PATCH %d: asset %d %q, want 200 uploading", i, st, a.State)
			}
		}
	}
	t.Logf("40 MiB in %d PATCHes over %d node(s): %v", len(chunks), len(nodes), time.Since(start).Round(time.Millisecond))

	gw.CheckObject(ctx, objectKey(id), src, ct)
	for _, c := range clients {
		c.checkReady(ctx, gw, id, src, ct)
	}
	gw.checkNoMultipartUploads(ctx, "after completion")
	if keys := gw.Objects(ctx, ""); len(keys) != 1 || keys[0] != objectKey(id) {
		t.Errorf("after completion: bucket holds %q, want only %q (no tail left)", keys, objectKey(id))
	}
	if h := c.headOffset(ctx, loc0); h != size {
		t.Errorf("HEAD after completion: offset %d, want %d", h, size)
	}
	// Nothing more fits; an empty PATCH at the end is harmless.
	if r, err := c.patch(ctx, loc0, size, []byte{0}, nil); err != nil || r.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("PATCH of 1 byte past the end: %v %v, want 413", r, err)
	}
	if r, err := c.patch(ctx, loc0, size, []byte{}, nil); err != nil || r.Status != http.StatusNoContent {
		t.Errorf("empty PATCH at the end: %v %v, want 204", r, err)
	}
	gw.CheckObject(ctx, objectKey(id), src, ct)
}

// TestChecksumMismatch: a chunk whose Upload-Checksum does not match is
// answered 460 and leaves the offset where it was, also when the chunk is
// large enough that parts went to S3 before the mismatch was known; the
// same chunk with the right checksum is then accepted.
func TestChecksumMismatch(t *testing.T) { eachS3(t, testChecksumMismatch) }

func testChecksumMismatch(t *testing.T, backend testsvc.S3Backend) {
	gw := startGateway(t, backend)
	srv := startRoughy(t, gw)
	ctx := testCtx(t)
	c := newClient(t, srv, acmeKey)
	const size = 24 * mib
	src := randomBytes(t, size, 2)
	loc, id := c.create(ctx, size, videoMD("video/webm"), nil)

	first := int64(5*mib + 1)
	r, err := c.patch(ctx, loc, 0, src[:first], map[string]string{"Upload-Checksum": sha256Header(src[:first])})
	if err != nil || r.Status != http.StatusNoContent {
		t.Fatalf("PATCH 1 with the right sha256: %v %v, want 204", r, err)
	}
	second := src[first : first+12*mib]
	bad := append([]byte(nil), second...)
	bad[len(bad)-1] ^= 0xff // the digest of other bytes than those sent
	for _, sum := range []string{sha256Header(bad), sha1Header(bad)} {
		r, err = c.patch(ctx, loc, first, second, map[string]string{"Upload-Checksum": sum})
		if err != nil {
			t.Fatalf("PATCH with a wrong checksum (%s): %v", sum[:4], err)
		}
		if r.Status != 460 {
			t.Errorf("PATCH with a wrong %s checksum: %v, want 460", strings.Fields(sum)[0], r)
		}
		if h := c.headOffset(ctx, loc); h != first {
			t.Fatalf("after 460: HEAD offset %d, want %d (unchanged)", h, first)
		}
	}
	r, err = c.patch(ctx, loc, first, second, map[string]string{"Upload-Checksum": sha1Header(second)})
	if err != nil || r.Status != http.StatusNoContent {
		t.Fatalf("retry with the right sha1: %v %v, want 204", r, err)
	}
	if got, _ := offsetOf(r.Header); got != first+int64(len(second)) {
		t.Fatalf("retry: Upload-Offset %d, want %d", got, first+int64(len(second)))
	}
	c.finish(ctx, loc, src, first+int64(len(second)), 8*mib, 0)
	gw.CheckObject(ctx, objectKey(id), src, "video/webm")
	c.checkReady(ctx, gw, id, src, "video/webm")
	gw.checkNoMultipartUploads(ctx, "after completion")
}

// TestRacingPatches sends two PATCHes of different bytes at the same
// offset at once: at most one wins (the newer may take the older over and
// then find the offset moved: both 409), and the final object is one
// body's committed bytes followed by the rest, never a mix.
func TestRacingPatches(t *testing.T) { eachS3(t, testRacingPatches) }

func testRacingPatches(t *testing.T, backend testsvc.S3Backend) {
	gw := startGateway(t, backend)
	srv := startRoughy(t, gw)
	ctx := testCtx(t)
	const (
		size  = 20 * mib
		chunk = 12 * mib
	)
	rest := randomBytes(t, size-chunk, 3)
	bodies := [2][]byte{randomBytes(t, chunk, 4), randomBytes(t, chunk, 5)}
	for round := range 3 {
		c := newClient(t, srv, acmeKey)
		loc, id := c.create(ctx, size, videoMD("video/mp4"), nil)
		var (
			replies   [2]reply
			errs      [2]error
			writeErrs [2]error
			wg        sync.WaitGroup
			ready     = make(chan struct{})
		)
		for i := range 2 {
			wg.Go(func() {
				<-ready
				replies[i], writeErrs[i], errs[i] = c.rawExchange(loc, 0, bodies[i])
			})
		}
		close(ready)
		wg.Wait()
		for i, werr := range writeErrs {
			if werr != nil {
				// The server answered before reading the whole body and
				// closed: a client that stops at its failed write (Go's
				// net/http) never sees the reply.
				t.Logf("round %d: PATCH %d: body write failed: %v (reply %v)", round, i, werr, replies[i])
			}
		}

		winner := -1
		for i := range 2 {
			switch {
			case errs[i] != nil:
				t.Errorf("round %d: PATCH %d: no reply: %v (want 204, 409 or 423)", round, i, errs[i])
			case replies[i].Status == http.StatusNoContent:
				if winner >= 0 {
					t.Fatalf("round %d: both racing PATCHes answered 204", round)
				}
				winner = i
			case replies[i].Status != http.StatusLocked && replies[i].Status != http.StatusConflict:
				t.Errorf("round %d: losing PATCH %d: %v, want 423 or 409", round, i, replies[i])
			}
		}
		var want []byte
		if winner >= 0 {
			t.Logf("round %d: PATCH %d won; loser: %d", round, winner, replies[1-winner].Status)
			if h := c.headOffset(ctx, loc); h != chunk {
				t.Fatalf("round %d: HEAD offset %d, want %d", round, h, chunk)
			}
			c.patchOK(ctx, loc, chunk, rest)
			want = append(append([]byte(nil), bodies[winner]...), rest...)
		} else {
			// The newer took the older over and found the offset moved
			// (takeover): no winner. The committed prefix is one body's;
			// finish with body 0 from there.
			off := c.headOffset(ctx, loc)
			t.Logf("round %d: no winner (%v / %v), offset %d", round, replies[0].Status, replies[1].Status, off)
			more := append(append([]byte(nil), bodies[0][off:]...), rest...)
			c.patchOK(ctx, loc, off, more)
			for _, b := range bodies {
				want = append(append(append([]byte(nil), b[:off]...), bodies[0][off:]...), rest...)
				if got := gw.Object(ctx, objectKey(id)); bytes.Equal(got, want) {
					break
				}
			}
		}
		gw.CheckObject(ctx, objectKey(id), want, "video/mp4")
		c.checkReady(ctx, gw, id, want, "video/mp4")
		if t.Failed() {
			return
		}
	}
	gw.checkNoMultipartUploads(ctx, "after completion")
	// Racing writers must not leave tails behind: only the three objects.
	if keys := gw.Objects(ctx, ""); len(keys) != 3 {
		t.Errorf("bucket holds %q, want the 3 final objects only", keys)
	}
}

// TestConcatenation joins two partial uploads of at least 5 MiB each (the
// S3 part minimum) with a final POST.
func TestConcatenation(t *testing.T) { eachS3(t, testConcatenation) }

func testConcatenation(t *testing.T, backend testsvc.S3Backend) {
	gw := startGateway(t, backend)
	srv := startRoughy(t, gw)
	ctx := testCtx(t)
	c := newClient(t, srv, acmeKey)
	a := randomBytes(t, 6*mib+7, 6)
	b := randomBytes(t, 5*mib+123, 7)

	var locs []string
	for _, part := range [][]byte{a, b} {
		loc, pid := c.create(ctx, int64(len(part)), nil, map[string]string{"Upload-Concat": "partial"})
		// Two PATCHes each, the first below the part minimum.
		c.patchOK(ctx, loc, 0, part[:3*mib])
		c.patchOK(ctx, loc, 3*mib, part[3*mib:])
		r := c.must(ctx, http.MethodHead, loc, nil, nil)
		if r.Header.Get("Upload-Concat") != "partial" {
			t.Errorf("HEAD of a partial upload: Upload-Concat %q, want partial", r.Header.Get("Upload-Concat"))
		}
		if st, _ := c.asset(ctx, pid); st != http.StatusNotFound {
			t.Errorf("GET asset of a partial upload: %d, want 404 (partials have no visible asset)", st)
		}
		locs = append(locs, loc)
	}
	const ct = "audio/mpeg"
	r := c.must(ctx, http.MethodPost, srv.URL+tusPath, nil, map[string]string{
		"Upload-Concat":   "final;" + strings.Join(locs, " "),
		"Upload-Metadata": encodeMetadata(map[string]string{"type": "audio", "content_type": ct}),
	})
	if r.Status != http.StatusCreated {
		t.Fatalf("final POST: %v, want 201", r)
	}
	loc := r.Header.Get("Location")
	id := loc[strings.LastIndexByte(loc, '/')+1:]
	want := append(append([]byte(nil), a...), b...)
	gw.CheckObject(ctx, objectKey(id), want, ct)
	c.checkReady(ctx, gw, id, want, ct)
	if h := c.headOffset(ctx, loc); h != int64(len(want)) {
		t.Errorf("HEAD of the final upload: offset %d, want %d", h, len(want))
	}
	gw.checkNoMultipartUploads(ctx, "after concatenation")
}

// waitFor polls cond every 100 ms until it holds or d passed.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	return testsvc.WaitFor(ctx, d, 100*time.Millisecond, cond)
}

// TestPartBudget50GiB is the scaled-down run of the part arithmetic:
// an upload that declares 50 GiB receives 5 MiB + 1 byte PATCHes (the
// worst chunk size: one S3 part each would need 10,240 parts). After 40 MiB
// the part numbers used, projected to 50 GiB, must stay within S3's 10,000.
func TestPartBudget50GiB(t *testing.T) { eachS3(t, testPartBudget50GiB) }

func testPartBudget50GiB(t *testing.T, backend testsvc.S3Backend) {
	gw := startGateway(t, backend)
	srv := startRoughy(t, gw)
	ctx := testCtx(t)
	c := newClient(t, srv, acmeKey)
	const (
		length  = 53687091200 // 50 GiB, Tus-Max-Size
		chunk   = 5*mib + 1
		patches = 8
	)
	src := randomBytes(t, chunk*patches, 16)
	loc, id := c.create(ctx, length, videoMD("video/mp4"), nil)
	var off int64
	for range patches {
		off = c.patchOK(ctx, loc, off, src[off:off+chunk])
	}

	var uploadID string
	for _, u := range gw.MultipartUploads(ctx) {
		if aws.ToString(u.Key) == objectKey(id) {
			uploadID = aws.ToString(u.UploadId)
		}
	}
	if uploadID == "" {
		t.Fatalf("no multipart upload for %s after %d bytes", objectKey(id), off)
	}
	parts, err := gw.Client().ListParts(ctx, &s3.ListPartsInput{
		Bucket: &gw.Bucket, Key: aws.String(objectKey(id)), UploadId: &uploadID,
	})
	if err != nil {
		t.Fatalf("ListParts: %v", err)
	}
	var maxPart int32
	var inParts int64
	for _, p := range parts.Parts {
		maxPart = max(maxPart, aws.ToInt32(p.PartNumber))
		inParts += aws.ToInt64(p.Size)
		if aws.ToInt64(p.Size) < 5*mib {
			t.Errorf("part %d holds %d bytes, below S3's 5 MiB minimum", aws.ToInt32(p.PartNumber), aws.ToInt64(p.Size))
		}
	}
	projected := float64(maxPart) * float64(length) / float64(off)
	t.Logf("after %d PATCHes (%d bytes): %d parts, highest number %d, %d bytes in parts, %d in the tail; projected to 50 GiB: %.0f part numbers",
		patches, off, len(parts.Parts), maxPart, inParts, off-inParts, projected)
	if projected > 10000 {
		t.Errorf("part numbers used so far project to %.0f for 50 GiB, more than S3's 10,000", projected)
	}
	if inParts > off {
		t.Errorf("parts hold %d bytes, more than the %d acknowledged", inParts, off)
	}
	if h := c.headOffset(ctx, loc); h != off {
		t.Errorf("HEAD offset %d, want %d", h, off)
	}
	if r := c.must(ctx, http.MethodDelete, loc, nil, nil); r.Status != http.StatusNoContent {
		t.Errorf("DELETE: %v, want 204", r)
	}
	gw.checkNoMultipartUploads(ctx, "after DELETE")
}
