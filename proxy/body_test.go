package proxy

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

func TestBodyReaderKeepsNetworkErrors(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry())
	ctx := &fasthttp.RequestCtx{}
	netErr := errors.New("connection reset by peer")
	b := &bodyReader{r: io.MultiReader(bytes.NewReader([]byte("abc")), failingReader{netErr}), ctx: ctx, idle: 1, m: m}
	got, err := io.ReadAll(b)
	if string(got) != "abc" || !errors.Is(err, errBodyRead) || !errors.Is(err, netErr) {
		t.Fatalf("ReadAll = %q, %v; want abc and a body read error wrapping the network error", got, err)
	}
	if b.n != 3 || m.bytesReceived.Load() != 3 {
		t.Errorf("counted %d bytes (metrics %d), want 3", b.n, m.bytesReceived.Load())
	}
	if _, err := b.Read(make([]byte, 1)); !errors.Is(err, netErr) {
		t.Errorf("read after the error: %v, want the same error", err)
	}
}

// TestBodyReaderAllocs: the per-read path of an upload allocates nothing.
func TestBodyReaderAllocs(t *testing.T) {
	src := bytes.NewReader(make([]byte, 1<<20))
	b := &bodyReader{r: src, ctx: &fasthttp.RequestCtx{}, idle: 1, m: newMetrics(prometheus.NewRegistry())}
	buf := make([]byte, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := b.Read(buf); err != nil {
			if _, err := src.Seek(0, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			b.eof = false
		}
	})
	if allocs != 0 {
		t.Errorf("bodyReader.Read allocates %.1f times per call, want 0", allocs)
	}
}
