package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// s3Through points a new sink, configured by cfg (bucket and endpoint
// filled in), at a proxy in front of e's versitygw whose every request
// goes through intercept (forward reaches versitygw).
func s3Through(t *testing.T, e *s3Env, cfg S3Config, intercept func(w http.ResponseWriter, r *http.Request, forward http.Handler)) *S3Sink {
	t.Helper()
	target, err := url.Parse(e.srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		// The sink signed the request for this proxy's host.
		r.Out.Host = r.In.Host
		// This proxy has already said 100 Continue (by reading the body);
		// waiting for versitygw's would be a second second of silence.
		r.Out.Header.Del("Expect")
	}}
	proxy := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { intercept(w, r, rp) }))
	// A small receive buffer: what the proxy has not read is soon what
	// the sink cannot write (loopback's buffers would hide megabytes).
	proxy.Listener = smallBufListener{proxy.Listener}
	proxy.Start()
	t.Cleanup(proxy.Close)
	cfg.Bucket, cfg.Endpoint, cfg.ForcePathStyle = e.srv.Bucket, proxy.URL, true
	sink, err := NewS3Sink(t.Context(), cfg, e.pool)
	if err != nil {
		t.Fatal(err)
	}
	return sink
}

// smallBufListener accepts TCP connections with a 64 KiB receive buffer.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		if err := tc.SetReadBuffer(64 << 10); err != nil {
			tc.Close()
			return nil, err
		}
	}
	return c, err
}

// TestS3StallTimeout: an S3 that stops answering mid-part (a blackhole)
// fails the write with ErrStorage after the stall timeout and the SDK's
// attempts, instead of hanging it; the offset stays, and the write
// resumes once S3 answers again. A part that crawls but keeps moving for
// many times the stall timeout is not cut.
func TestS3StallTimeout(t *testing.T) {
	e := newS3Env(t, testsvc.Versitygw, S3LayoutDefault)
	const length = 40 * tMiB
	data := testData(22, length)
	var hang, crawl atomic.Bool
	released := make(chan struct{})
	const stall = 1500 * time.Millisecond
	var longest atomic.Int64 // the longest crawling PUT, in ns
	e.sink = s3Through(t, e, S3Config{MaxAttempts: 2, StallTimeout: stall}, func(w http.ResponseWriter, r *http.Request, forward http.Handler) {
		switch {
		case r.Method == http.MethodPut && hang.Load():
			// Read a little, then nothing: no byte moves either way.
			// A short read changes nothing: the handler hangs either way.
			_, _ = io.CopyN(io.Discard, r.Body, 64<<10)
			select {
			case <-released:
			case <-r.Context().Done():
			}
			return
		case r.Method == http.MethodPut && crawl.Load():
			// 6 MiB/s: the last bytes of a part wait in the sink's
			// socket buffer (up to tcp_wmem's 4 MiB) after its last write
			// for less than half the stall timeout; a 16 MiB part takes
			// 1.8 times it.
			r.Body = io.NopCloser(&testsvc.PacedReader{R: r.Body, Rate: 6 << 20})
			start := time.Now()
			defer func() {
				for d := int64(time.Since(start)); ; {
					if l := longest.Load(); d <= l || longest.CompareAndSwap(l, d) {
						return
					}
				}
			}()
		}
		forward.ServeHTTP(w, r)
	})
	// After s3Through's: cleanups run last first, and closing the proxy
	// waits for the hanging handlers.
	t.Cleanup(func() { close(released) })
	su := e.create(t, "uploads/stall", length)

	hang.Store(true)
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // without the stall timeout: forever
	defer cancel()
	_, _, err := su.write(ctx, bytes.NewReader(data[:6*tMiB]), 6*tMiB, nil)
	if !errors.Is(err, ErrStorage) {
		t.Fatalf("write while S3 hangs: err %v after %v, want ErrStorage", err, time.Since(start))
	}
	t.Logf("write failed after %v (stall %v, 2 attempts)", time.Since(start).Round(time.Millisecond), stall)
	if got := su.snapshot().Offset; got != 0 {
		t.Fatalf("offset %d after a failed write, want 0", got)
	}

	hang.Store(false)
	crawl.Store(true)
	start = time.Now()
	if _, _, err := su.write(t.Context(), bytes.NewReader(data), length, nil); err != nil {
		t.Fatalf("write through a crawling S3: %v", err)
	}
	if l := time.Duration(longest.Load()); l < stall*5/4 {
		t.Fatalf("the longest crawling part upload took %v: the crawl did not hold one past the stall timeout, so it tests nothing", l)
	}
	t.Logf("the crawling write took %v, its longest part upload %v", time.Since(start).Round(time.Millisecond), time.Duration(longest.Load()).Round(time.Millisecond))
	su.complete(t)
	su.check(t, data)
}

// TestS3EdgeSizes: an empty upload, and a chunked body longer than the
// upload (ErrTooLarge, nothing of it stored).
func TestS3EdgeSizes(t *testing.T) {
	e := newS3Env(t, testsvc.Versitygw, S3LayoutDefault)

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
	e := newS3Env(t, testsvc.Versitygw, S3LayoutEqual)
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

// TestS3CancelledWriteSettlesSentParts: a write cancelled (a takeover, a
// DELETE, a lost commit race) while S3 holds a part it received whole
// returns only once S3 answered it, so an abort or complete that follows
// Write leaves no multipart upload behind. Cut at once, as a plain
// context cancel does, the part landed after the abort and recreated the
// upload in versitygw (seen as a flake of TestS3RacingWriters in CI).
func TestS3CancelledWriteSettlesSentParts(t *testing.T) {
	e := newS3Env(t, testsvc.Versitygw, S3LayoutDefault)
	const length = 40 * tMiB
	data := testData(23, length)
	received := make(chan struct{}, 8)
	hold := make(chan struct{})
	var answered atomic.Int64
	e.sink = s3Through(t, e, S3Config{}, func(w http.ResponseWriter, r *http.Request, forward http.Handler) {
		if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				return // cut by the client before it was whole
			}
			received <- struct{}{}
			<-hold
			r.Body = io.NopCloser(bytes.NewReader(body))
			forward.ServeHTTP(w, r)
			answered.Add(1)
			return
		}
		forward.ServeHTTP(w, r)
	})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release) // before the proxy closes: cleanups run last first
	su := e.create(t, "uploads/settle", length)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, _, err := su.write(ctx, bytes.NewReader(data), length, nil)
		done <- err
	}()
	select {
	case <-received:
	case err := <-done:
		t.Fatalf("write ended before S3 had a part: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		t.Fatalf("the cancelled write returned (%v) while S3 still held a part it had whole", err)
	case <-time.After(500 * time.Millisecond):
	}
	release()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled write: err %v, want context.Canceled", err)
	}
	if answered.Load() < 1 {
		t.Fatal("Write returned before S3 answered the part it had whole")
	}
	if err := e.sink.Abort(t.Context(), su.snapshot()); err != nil {
		t.Fatal(err)
	}
	if ids := e.multipartUploads(t, su.u.Key); len(ids) != 0 {
		t.Fatalf("multipart uploads left after the abort that followed the cancelled write: %v", ids)
	}
}
