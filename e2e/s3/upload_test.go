package s3e2e

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestFullUpload sends a 40 MiB file in uneven PATCHes (none a multiple of
// S3's 5 MiB part minimum but the sizes clients use) and checks the object
// in the bucket, the asset and its presigned download.
func TestFullUpload(t *testing.T) {
	gw := startGateway(t)
	fullUpload(t, gw, startRoughy(t, gw))
}

// TestFullUploadRedis is TestFullUpload with sessions in a real Redis
// (fleet mode).
func TestFullUploadRedis(t *testing.T) {
	redisURL := testsvc.StartRedis(t)
	gw := startGateway(t)
	fullUpload(t, gw, startRoughy(t, gw, "--sessions", "redis", "--redis-url", redisURL))
}

func fullUpload(t *testing.T, gw *gateway, srv *roughy) {
	ctx := testCtx(t)
	c := newClient(t, srv, acmeKey)
	const size = 40 * mib
	src := randomBytes(t, size, 1)
	const ct = "video/mp4"
	loc, id := c.create(ctx, size, videoMD(ct), nil)

	chunks := []int{5*mib + 1, 7 * mib, 16 * mib}
	chunks = append(chunks, size-(5*mib+1)-7*mib-16*mib)
	var off int64
	start := time.Now()
	for i, n := range chunks {
		got := c.patchOK(ctx, loc, off, src[off:off+int64(n)])
		off = got
		if h := c.headOffset(ctx, loc); h != off {
			t.Fatalf("after PATCH %d: HEAD offset %d, want %d", i, h, off)
		}
		if i < len(chunks)-1 {
			if st, a := c.asset(ctx, id); st != http.StatusOK || a.State != "uploading" {
				t.Errorf("after PATCH %d: asset %d %q, want 200 uploading", i, st, a.State)
			}
		}
	}
	t.Logf("40 MiB in %d PATCHes: %v", len(chunks), time.Since(start).Round(time.Millisecond))

	gw.CheckObject(ctx, objectKey(id), src, ct)
	c.checkReady(ctx, gw, id, src, ct)
	if ups := gw.MultipartUploads(ctx); len(ups) != 0 {
		t.Errorf("after completion: %d multipart uploads left, want 0", len(ups))
	}
	if keys := gw.Objects(ctx, ""); len(keys) != 1 || keys[0] != objectKey(id) {
		t.Errorf("after completion: bucket holds %q, want only %q (no tail left)", keys, objectKey(id))
	}
	// A completed upload's HEAD says so; another PATCH is refused.
	if h := c.headOffset(ctx, loc); h != size {
		t.Errorf("HEAD after completion: offset %d, want %d", h, size)
	}
}

// TestChecksumMismatch: a chunk whose Upload-Checksum does not match is
// answered 460 and leaves the offset where it was, also when the chunk is
// large enough that parts went to S3 before the mismatch was known; the
// same chunk with the right checksum is then accepted.
func TestChecksumMismatch(t *testing.T) {
	gw := startGateway(t)
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
	if ups := gw.MultipartUploads(ctx); len(ups) != 0 {
		t.Errorf("after completion: %d multipart uploads left, want 0", len(ups))
	}
}

// TestRacingPatches sends two PATCHes of different bytes at the same
// offset at once: exactly one may win, the other gets 423 or 409, and the
// final object is the winner's bytes followed by the rest.
func TestRacingPatches(t *testing.T) {
	gw := startGateway(t)
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
		if winner < 0 {
			t.Fatalf("round %d: no PATCH won: %v / %v (%v / %v)", round, replies[0], replies[1], errs[0], errs[1])
		}
		t.Logf("round %d: PATCH %d won; loser: %d", round, winner, replies[1-winner].Status)
		if h := c.headOffset(ctx, loc); h != chunk {
			t.Fatalf("round %d: HEAD offset %d, want %d", round, h, chunk)
		}
		c.patchOK(ctx, loc, chunk, rest)
		want := append(append([]byte(nil), bodies[winner]...), rest...)
		gw.CheckObject(ctx, objectKey(id), want, "video/mp4")
		c.checkReady(ctx, gw, id, want, "video/mp4")
		if t.Failed() {
			return
		}
	}
	if ups := gw.MultipartUploads(ctx); len(ups) != 0 {
		t.Errorf("after completion: %d multipart uploads left, want 0", len(ups))
	}
	// Racing writers must not leave tails behind: only the three objects.
	if keys := gw.Objects(ctx, ""); len(keys) != 3 {
		t.Errorf("bucket holds %q, want the 3 final objects only", keys)
	}
}

// TestConcatenation joins two partial uploads of at least 5 MiB each (the
// S3 part minimum) with a final POST.
func TestConcatenation(t *testing.T) {
	gw := startGateway(t)
	srv := startRoughy(t, gw)
	ctx := testCtx(t)
	c := newClient(t, srv, acmeKey)
	a := randomBytes(t, 6*mib+7, 6)
	b := randomBytes(t, 5*mib+123, 7)

	var locs []string
	for _, part := range [][]byte{a, b} {
		loc, _ := c.create(ctx, int64(len(part)), nil, map[string]string{"Upload-Concat": "partial"})
		// Two PATCHes each, the first below the part minimum.
		c.patchOK(ctx, loc, 0, part[:3*mib])
		c.patchOK(ctx, loc, 3*mib, part[3*mib:])
		r := c.must(ctx, http.MethodHead, loc, nil, nil)
		if r.Header.Get("Upload-Concat") != "partial" {
			t.Errorf("HEAD of a partial upload: Upload-Concat %q, want partial", r.Header.Get("Upload-Concat"))
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
	if ups := gw.MultipartUploads(ctx); len(ups) != 0 {
		t.Errorf("after concatenation: %d multipart uploads left, want 0", len(ups))
	}
}

// waitFor polls cond every 100 ms until it holds or d passed.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
