package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// faultyS3 puts a proxy in front of e's versitygw that answers 503 to the
// PUTs (parts, tails) fail says to fail, and points a new sink at it.
func faultyS3(t *testing.T, e *s3Env, maxAttempts int, fail func(n int64) bool) (*S3Sink, *atomic.Int64) {
	t.Helper()
	target, err := url.Parse(e.srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var puts atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && fail(puts.Add(1)) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	sink, err := NewS3Sink(t.Context(), S3Config{
		Bucket: e.srv.Bucket, Endpoint: proxy.URL, ForcePathStyle: true, MaxAttempts: maxAttempts,
	}, e.pool)
	if err != nil {
		t.Fatal(err)
	}
	return sink, &puts
}

// TestS3RetriesServerErrors: 503s are retried with backoff; when they
// outlast the retries the write fails with ErrStorage and commits nothing
// it did not store.
func TestS3RetriesServerErrors(t *testing.T) {
	e := newS3Env(t, S3LayoutDefault)
	const length = 12 * tMiB
	data := testData(20, length)

	// Every other PUT fails once: the SDK retries it.
	sink, puts := faultyS3(t, e, 5, func(n int64) bool { return n%2 == 1 })
	e.sink = sink
	su := e.create(t, "uploads/retry", length)
	if _, _, err := su.write(t.Context(), bytes.NewReader(data[:6*tMiB]), 6*tMiB, nil); err != nil {
		t.Fatalf("write through intermittent 503s: %v", err)
	}
	if puts.Load() < 2 {
		t.Fatalf("%d PUTs, want a retry", puts.Load())
	}

	// Every PUT fails: the write gives up with ErrStorage.
	sink, _ = faultyS3(t, e, 2, func(int64) bool { return true })
	e.sink = sink
	before := su.snapshot()
	_, _, err := su.write(t.Context(), bytes.NewReader(data[6*tMiB:]), length-6*tMiB, nil)
	if !errors.Is(err, ErrStorage) {
		t.Fatalf("write through a dead S3: err %v, want ErrStorage", err)
	}
	if got := su.snapshot(); got.Offset != before.Offset || !bytes.Equal(got.Storage, before.Storage) {
		t.Fatalf("offset moved %d→%d though nothing was stored", before.Offset, got.Offset)
	}
	if err := sink.Ping(t.Context()); err != nil {
		t.Fatalf("Ping (HEAD is not failed): %v", err)
	}
}

// TestS3EdgeSizes: an empty upload, and a chunked body longer than the
// upload (ErrTooLarge, nothing of it stored).
func TestS3EdgeSizes(t *testing.T) {
	e := newS3Env(t, S3LayoutDefault)

	empty := e.create(t, "uploads/empty", 0)
	if p, _, err := empty.write(t.Context(), bytes.NewReader(nil), 0, nil); err != nil || p.Offset != 0 {
		t.Fatalf("empty write: %+v, %v", p, err)
	}
	empty.complete(t)
	empty.check(t, []byte{})

	const length = 6 * tMiB
	data := testData(21, length+10)
	su := e.create(t, "uploads/toolarge", length)
	_, _, err := su.write(t.Context(), bytes.NewReader(data), -1, nil)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("body past Upload-Length: err %v, want ErrTooLarge", err)
	}
	if got := su.snapshot().Offset; got != 0 {
		t.Fatalf("offset %d after a body past the length, want 0", got)
	}
	if _, _, err := su.write(t.Context(), bytes.NewReader(data[:length]), -1, nil); err != nil {
		t.Fatal(err)
	}
	su.complete(t)
	su.check(t, data[:length])
}

// TestS3Backpressure: uploads share a budget smaller than what they would
// like to hold; they wait for buffers instead of allocating, and finish.
func TestS3Backpressure(t *testing.T) {
	e := newS3Env(t, S3LayoutEqual)
	e.pool = NewPool(12 << 20) // two 5 MiB part buffers at a time, for 3 uploads
	e.sink.pool = e.pool
	const length = 21 * tMiB
	var wg sync.WaitGroup
	uploads := make([]*s3Upload, 3)
	datas := make([][]byte, 3)
	for i := range uploads {
		datas[i] = testData(uint64(30+i), length)
		uploads[i] = e.create(t, fmt.Sprintf("uploads/pressure-%d", i), length)
		wg.Go(func() {
			if _, _, err := uploads[i].write(t.Context(), bytes.NewReader(datas[i]), length, nil); err != nil {
				t.Errorf("upload %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i, su := range uploads {
		su.complete(t)
		su.check(t, datas[i])
	}
	if got := e.pool.InUse(); got != 0 {
		t.Fatalf("pool has %d bytes out after the uploads", got)
	}
}
