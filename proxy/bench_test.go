package proxy

import (
	"net/http"
	"strconv"
	"testing"
)

// BenchmarkPatch64MiB measures one 64 MiB PATCH through the real server
// (loopback, local sink with its fsyncs, SHA-256) per iteration.
func BenchmarkPatch64MiB(b *testing.B) {
	e := newEnv(b, nil, nil)
	chunk := make([]byte, 64<<20)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		c := e.create("acme", int64(len(chunk)))
		r := e.patch("acme", c.Location, 0, chunk)
		if r.status != http.StatusNoContent || r.h.Get("Upload-Offset") != strconv.Itoa(len(chunk)) {
			b.Fatalf("PATCH: %d %s", r.status, r.body)
		}
		e.do("DELETE", c.Location, e.tusHdr("acme"), nil)
	}
}
