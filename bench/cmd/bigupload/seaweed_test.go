package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestDownloadCompares: the read-back of -mode seaweed finds a changed
// byte, a short object and a long one, and passes the exact stream.
func TestDownloadCompares(t *testing.T) {
	const n = 9<<20 + 5 // more than one 8 MiB read buffer
	sent := make([]byte, n)
	newGenerator(3).fill(sent)
	flipped := append([]byte(nil), sent...)
	flipped[8<<20+7] ^= 1
	for _, tc := range []struct {
		name      string
		body      []byte
		equal     bool
		firstDiff int64
	}{
		{"exact", sent, true, -1},
		{"one byte changed", flipped, false, 8<<20 + 7},
		{"short", sent[:n-1], false, n - 1},
		{"long", append(append([]byte(nil), sent...), 0), false, n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/b/uploads/x" {
					http.NotFound(w, r)
					return
				}
				_, _ = w.Write(tc.body) // a short body is what the download reports
			}))
			defer srv.Close()
			s := &seaweed{endpoint: srv.URL, bucket: "b"}
			d, err := s.download(t.Context(), "uploads/x", 3, n)
			if err != nil {
				t.Fatal(err)
			}
			if d.equal != tc.equal || d.firstDiff != tc.firstDiff || d.size != int64(len(tc.body)) {
				t.Errorf("got equal %v, first difference %d, size %d; want %v, %d, %d", d.equal, d.firstDiff, d.size, tc.equal, tc.firstDiff, len(tc.body))
			}
		})
	}
}
