package proxy

import (
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/roughy/ingest/pipeline"
)

// TestFailedSyncAnswers: when the fdatasync before a commit fails, the
// PATCH commits nothing and answers 503 with Retry-After, or 507
// storage_full when the disk is full (ENOSPC): a full disk does not pass
// by itself like an outage. Once syncs work again, the upload resumes
// from where it was.
func TestFailedSyncAnswers(t *testing.T) {
	var fail atomic.Pointer[error]
	sync := func(f *os.File) error {
		if err := fail.Load(); err != nil {
			return *err
		}
		return f.Sync()
	}
	e := newEnv(t, nil, nil, pipeline.LocalSync(sync))
	data := randomBytes(t, 3<<20)
	c := e.create("acme", int64(len(data)))
	for _, tc := range []struct {
		err        error
		status     int
		code       string
		retryAfter bool
	}{
		{syscall.EIO, http.StatusServiceUnavailable, "backend_unavailable", true},
		{syscall.ENOSPC, http.StatusInsufficientStorage, "storage_full", false},
	} {
		fail.Store(&tc.err)
		r := e.patch("acme", c.Location, 0, data)
		if r.status != tc.status || r.errorCode() != tc.code || (r.h.Get("Retry-After") != "") != tc.retryAfter {
			t.Fatalf("PATCH with fdatasync failing with %v: %d %q Retry-After %q; want %d %s",
				tc.err, r.status, r.errorCode(), r.h.Get("Retry-After"), tc.status, tc.code)
		}
		if r.h.Get("Upload-Offset") != "" {
			t.Fatalf("%d answer carries Upload-Offset %q", r.status, r.h.Get("Upload-Offset"))
		}
		if h := e.head("acme", c.Location); h.h.Get("Upload-Offset") != "0" {
			t.Fatalf("offset after a failed sync (%v): %q, want 0", tc.err, h.h.Get("Upload-Offset"))
		}
	}
	fail.Store(nil)
	if r := e.patch("acme", c.Location, 0, data); r.status != http.StatusNoContent {
		t.Fatalf("PATCH once syncs work again: %d %s, want 204", r.status, r.body)
	}
	if _, a := e.getAsset("acme", c.SessionID); a.State != "ready" || a.SHA256 != sha256Hex(data) {
		t.Fatalf("asset: %s %s, want ready with sha256 %s", a.State, a.SHA256, sha256Hex(data))
	}
	e.wantReady("acme", c.SessionID, data)
}

// TestReadyzFreeSpaceFloor: /readyz fails (503 storage_low) while the
// storage has less free space than MinFreeSpace, so a balancer sends new
// uploads elsewhere before the disk is full.
func TestReadyzFreeSpaceFloor(t *testing.T) {
	for _, tc := range []struct {
		floor int64
		want  int
	}{
		{1 << 20, http.StatusOK},
		{1 << 62, http.StatusServiceUnavailable},
	} {
		e := newEnv(t, func(c *Config) { c.MinFreeSpace = tc.floor }, nil)
		r := e.do("GET", "/readyz", nil, nil)
		if r.status != tc.want || (tc.want != http.StatusOK && r.errorCode() != "storage_low") {
			t.Fatalf("readyz with a floor of %d bytes: %d %s, want %d", tc.floor, r.status, r.body, tc.want)
		}
	}
}
