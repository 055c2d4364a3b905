package proxy

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestTakeoverFromAnotherNode: two nodes on one Redis and one storage. A
// PATCH on node B of an upload whose stalled PATCH node A holds sends A a
// release request through Redis: A's write lets go at once, commits what
// it read and answers 409 upload_taken_over, and B's request sees the
// offset as it now stands; the upload then completes on B. Without the
// request to the other node, B would wait out the takeover and answer 423.
func TestTakeoverFromAnotherNode(t *testing.T) {
	url := testsvc.StartRedis(t)
	slow := func(c *Config) { c.BodyIdleTimeout = time.Minute; c.TakeoverWait = 5 * time.Second }
	a := newRedisEnvOn(t, url, slow, nil)
	b := newRedisEnvOn(t, url, slow, a.srv.pipe.Sink())
	if a.store.Node() == b.store.Node() {
		t.Fatalf("both servers are node %q", a.store.Node())
	}
	size, sent := 1<<20, 64<<10
	data := bytes.Repeat([]byte("roughy!"), size/7+1)[:size]
	c := a.create("acme", int64(size))
	held := a.stalledPatch(c, size, data[:sent])
	// Location names node A; node B serves the same path.
	onB := b.url + strings.TrimPrefix(c.Location, a.url)

	start := time.Now()
	r := b.patch("acme", onB, 0, data)
	if r.status != http.StatusConflict || errorCode(t, r) != "offset_mismatch" {
		t.Fatalf("PATCH on node B: %d %s, want 409 offset_mismatch (node A let go and committed what it read)", r.status, r.body)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("PATCH on node B took %v: node A did not let go when asked", took)
	}
	if r := held.read("PATCH"); r.status != http.StatusConflict || errorCode(t, r) != "upload_taken_over" {
		t.Errorf("node A's stalled PATCH: %d %s, want 409 upload_taken_over", r.status, r.body)
	}
	off, err := strconv.Atoi(b.head("acme", onB).h.Get("Upload-Offset"))
	if err != nil || off != sent {
		t.Fatalf("HEAD on node B: offset %d (%v), want %d", off, err, sent)
	}
	if r := b.patch("acme", onB, int64(off), data[off:]); r.status != http.StatusNoContent {
		t.Fatalf("PATCH on node B from %d: %d %s", off, r.status, r.body)
	}
	b.wantReady("acme", c.SessionID, data)
}
