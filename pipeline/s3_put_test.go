package pipeline

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/roughy/ingest/internal/testsvc"
)

// opCount is an Observer that counts S3 requests by operation.
type opCount struct {
	mu  sync.Mutex
	ops map[string]int
}

func (o *opCount) StartS3(ctx context.Context, op string, _ int32) (context.Context, func(error)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ops == nil {
		o.ops = map[string]int{}
	}
	o.ops[op]++
	return ctx, func(error) {}
}

// take returns the counts so far and starts again from zero.
func (o *opCount) take() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	got := maps.Clone(o.ops)
	o.ops = nil
	if got == nil {
		got = map[string]int{}
	}
	return got
}

func wantOps(t *testing.T, what string, got, want map[string]int) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Fatalf("%s: S3 requests %v, want %v", what, got, want)
	}
}

// wholeUpload is an upload of data whose storage was never created, as
// a creation on S3 leaves it.
func (e *s3Env) wholeUpload(key string, data []byte) *s3Upload {
	u := Upload{ID: key, Key: key, Length: int64(len(data)), ContentType: "video/mp4"}
	return &s3Upload{env: e, u: u, nextPart: 1, whole: true}
}

// TestS3PutWhole: an upload whose whole body comes in one write within
// one part is stored with one PutObject, no multipart request, and
// completes with one HeadObject that checks its size and CRC32C; the
// object holds the bytes. DELETE (Abort) removes the object.
func TestS3PutWhole(t *testing.T) { eachS3(t, testS3PutWhole) }

func testS3PutWhole(t *testing.T, backend testsvc.S3Backend) {
	e := newS3Env(t, backend, S3LayoutDefault)
	obs := &opCount{}
	sink, err := NewS3Sink(t.Context(), S3Config{Bucket: e.srv.Bucket, Endpoint: e.srv.Endpoint, ForcePathStyle: true, Observer: obs}, e.pool)
	if err != nil {
		t.Fatal(err)
	}
	e.sink = sink
	data := testData(41, 3*tMiB+17)
	su := e.wholeUpload("put/whole", data)
	if !sink.PutsWhole(su.u, int64(len(data))) {
		t.Fatal("PutsWhole refuses a whole upload within one part")
	}
	// The body gives its last bytes with io.EOF, as a request body held
	// in memory does.
	if _, _, err := su.write(t.Context(), iotest.DataErrReader(bytes.NewReader(data)), int64(len(data)), nil); err != nil {
		t.Fatalf("write: %v", err)
	}
	wantOps(t, "write", obs.take(), map[string]int{"PutObject": 1})
	if u := su.snapshot(); u.Offset != int64(len(data)) || len(su.parts) != 1 {
		t.Fatalf("committed offset %d with %d parts, want %d with 1", u.Offset, len(su.parts), len(data))
	}
	su.complete(t)
	wantOps(t, "complete", obs.take(), map[string]int{"HeadObject": 1})
	got, ct := e.object(t, "put/whole")
	if !bytes.Equal(got, data) || ct != "video/mp4" {
		t.Fatalf("object: %d bytes (equal %v), Content-Type %q", len(got), bytes.Equal(got, data), ct)
	}
	if ids := e.multipartUploads(t, "put/whole"); len(ids) != 0 {
		t.Fatalf("multipart uploads left: %v", ids)
	}
	// Complete again (a retried completion) only checks again.
	su.complete(t)
	wantOps(t, "second complete", obs.take(), map[string]int{"HeadObject": 1})

	if err := sink.Abort(t.Context(), su.snapshot()); err != nil {
		t.Fatalf("abort: %v", err)
	}
	if keys := e.keys(t, "put/whole"); len(keys) != 0 {
		t.Fatalf("objects left after abort: %v", keys)
	}
	if ops := obs.take(); ops["AbortMultipartUpload"] != 0 || ops["DeleteObject"] != 1 {
		t.Fatalf("abort of a put object: S3 requests %v", ops)
	}
}

// TestS3PutFails: a PutObject that S3 refuses commits nothing: the
// upload stays at offset 0 with its storage still to create, and the
// same write retried completes it.
func TestS3PutFails(t *testing.T) { eachS3(t, testS3PutFails) }

func testS3PutFails(t *testing.T, backend testsvc.S3Backend) {
	e := newS3Env(t, backend, S3LayoutDefault)
	obs := &opCount{}
	var fail atomic.Bool
	fail.Store(true)
	e.sink = s3Through(t, e, S3Config{MaxAttempts: 1, Observer: obs}, func(w http.ResponseWriter, r *http.Request, forward http.Handler) {
		if fail.Load() && r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/put/fails") {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		forward.ServeHTTP(w, r)
	})
	data := testData(42, 1*tMiB+3)
	su := e.wholeUpload("put/fails", data)
	p, _, err := su.write(t.Context(), bytes.NewReader(data), int64(len(data)), nil)
	if !errors.Is(err, ErrStorage) {
		t.Fatalf("write with PutObject failing: %v, want ErrStorage", err)
	}
	if u := su.snapshot(); p.Offset != 0 || u.Offset != 0 || u.Storage != nil || len(su.parts) != 0 {
		t.Fatalf("failed put: progress %d, committed offset %d, storage %q, %d parts; want nothing", p.Offset, u.Offset, u.Storage, len(su.parts))
	}
	wantOps(t, "failed write", obs.take(), map[string]int{"PutObject": 1})
	fail.Store(false)
	if _, _, err := su.write(t.Context(), bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatalf("retry: %v", err)
	}
	su.complete(t)
	wantOps(t, "retry", obs.take(), map[string]int{"PutObject": 1, "HeadObject": 1})
	if got, _ := e.object(t, "put/fails"); !bytes.Equal(got, data) {
		t.Fatalf("object after retry: %d bytes, want the %d written", len(got), len(data))
	}
}
