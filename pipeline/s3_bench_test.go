package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// repeatReader yields b over and over.
type repeatReader struct {
	b   []byte
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.off:])
	r.off = (r.off + n) % len(r.b)
	return n, nil
}

// endlessSource is a Source over r with no chunk limit, for measuring the
// buffer path alone.
func endlessSource(t testing.TB, r io.Reader) *Source {
	t.Helper()
	src, err := NewSource(r, Upload{Length: -1}, -1)
	if err != nil {
		t.Fatal(err)
	}
	src.limit = 1 << 62
	return src
}

// TestS3FillPartAllocs: taking a part buffer from the pool, reading and
// hashing (SHA-256 + CRC32C) a part into it and giving it back allocates
// nothing in steady state.
func TestS3FillPartAllocs(t *testing.T) {
	pool := NewPool(64 << 20)
	src := endlessSource(t, &repeatReader{b: testData(9, 256<<10)})
	ctx := t.Context()
	fill := func() {
		buf, err := pool.Get(ctx, 5<<20)
		if err != nil {
			t.Fatal(err)
		}
		if n, _, err := fillPart(src, buf, 0, 0); err != nil || n != len(buf) {
			t.Fatalf("fillPart: %d, %v", n, err)
		}
		pool.Put(buf)
	}
	fill() // warm the pool
	if allocs := testing.AllocsPerRun(20, fill); allocs != 0 {
		t.Fatalf("%.1f allocations per part, want 0", allocs)
	}
	if pool.InUse() != 0 {
		t.Fatalf("pool has %d bytes out after the parts, want 0", pool.InUse())
	}
}

// BenchmarkS3FillPart measures the buffer path without S3: pool, read,
// SHA-256 and CRC32C of 5 MiB parts.
func BenchmarkS3FillPart(b *testing.B) {
	pool := NewPool(64 << 20)
	src := endlessSource(b, &repeatReader{b: testData(9, 4<<20)})
	ctx := b.Context()
	b.SetBytes(5 << 20)
	b.ReportAllocs()
	for b.Loop() {
		buf, err := pool.Get(ctx, 5<<20)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := fillPart(src, buf, 0, 0); err != nil {
			b.Fatal(err)
		}
		pool.Put(buf)
	}
}

// BenchmarkS3Pipeline uploads 64 MiB PATCHes through Pipeline.Write into
// versitygw (one upload of one PATCH per op, completed), as the proxy
// does. Client, sink and versitygw share this machine's cores. It runs
// with the default stall timeout (deadlines pushed on every read and
// every 1 MiB piece of a write) and without one, side by side.
func BenchmarkS3Pipeline(b *testing.B) {
	for _, stall := range []time.Duration{0, -1} {
		name := "stall-timeout-default"
		if stall < 0 {
			name = "stall-timeout-off"
		}
		b.Run(name, func(b *testing.B) { benchS3Pipeline(b, stall) })
	}
}

func benchS3Pipeline(b *testing.B, stall time.Duration) {
	e := newS3Env(b, testsvc.Versitygw, S3LayoutDefault)
	sink, err := NewS3Sink(b.Context(), S3Config{
		Bucket: e.srv.Bucket, Endpoint: e.srv.Endpoint, ForcePathStyle: true, PartConcurrency: 3, StallTimeout: stall,
	}, e.pool)
	if err != nil {
		b.Fatal(err)
	}
	e.sink = sink
	data := testData(10, MaxChunk)
	b.SetBytes(MaxChunk)
	b.ReportAllocs()
	parts := 0
	i := 0
	cpu0 := processCPU()
	for b.Loop() {
		i++
		su := e.create(b, fmt.Sprintf("uploads/bench-%d", i), MaxChunk)
		if _, _, err := su.write(b.Context(), bytes.NewReader(data), MaxChunk, nil); err != nil {
			b.Fatal(err)
		}
		su.complete(b)
		parts += len(su.parts)
		if err := e.sink.deleteObject(b.Context(), su.u.Key); err != nil {
			b.Fatal(err)
		}
	}
	// This process's CPU (sink, SDK, net/http; versitygw is another
	// process): steadier than wall time on a shared machine.
	cpu := processCPU() - cpu0
	b.ReportMetric(cpu.Seconds()/(float64(i)*MaxChunk/(1<<30)), "cpu-s/GiB")
	b.ReportMetric(float64(parts)/float64(i), "parts/op")
	if e.pool.InUse() != 0 {
		b.Fatalf("pool has %d bytes out after the uploads", e.pool.InUse())
	}
}

// TestS3WireFormat checks what the sink sends, through a recording proxy
// in front of versitygw: parts and tails carry x-amz-checksum-crc32c and
// an UNSIGNED-PAYLOAD signature (the SDK hashes nothing), and versitygw
// rejects a part whose CRC32C does not match.
func TestS3WireFormat(t *testing.T) {
	e := newS3Env(t, testsvc.Versitygw, S3LayoutEqual)
	target, err := url.Parse(e.srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var puts []http.Header
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			mu.Lock()
			puts = append(puts, r.Header.Clone())
			mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	sink, err := NewS3Sink(t.Context(), S3Config{Bucket: e.srv.Bucket, Endpoint: proxy.URL, ForcePathStyle: true, Layout: S3LayoutEqual}, e.pool)
	if err != nil {
		t.Fatal(err)
	}
	e.sink = sink

	data := testData(11, 6*tMiB)
	su := e.create(t, "uploads/wire", 20*tMiB)
	if _, _, err := su.write(t.Context(), bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := puts
	mu.Unlock()
	if len(got) != 2 { // one part, one tail
		t.Fatalf("%d PUTs, want a part and a tail", len(got))
	}
	for _, h := range got {
		if v := h.Get("X-Amz-Content-Sha256"); v != "UNSIGNED-PAYLOAD" {
			t.Errorf("x-amz-content-sha256 %q, want UNSIGNED-PAYLOAD", v)
		}
		if h.Get("X-Amz-Checksum-Crc32c") == "" {
			t.Errorf("no x-amz-checksum-crc32c; headers %v", h)
		}
		if h.Get("X-Amz-Trailer") != "" || strings.Contains(h.Get("Content-Encoding"), "aws-chunked") {
			t.Errorf("SDK-computed trailing checksum: %v", h)
		}
	}

	st := state(t, su.snapshot())
	part := data[:5*tMiB]
	crc := crcOf(part)
	_, _, err = sink.uploadPart(t.Context(), su.u.Key, st.UploadID, 100, part, crc^1)
	if !errors.Is(err, ErrStorage) {
		t.Fatalf("part with a wrong CRC32C: err %v, want a rejection (ErrStorage)", err)
	}
	t.Logf("wrong CRC32C: %v", err)
	if _, _, err := sink.uploadPart(t.Context(), su.u.Key, st.UploadID, 100, part, crc); err != nil {
		t.Fatalf("part with the right CRC32C: %v", err)
	}
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
