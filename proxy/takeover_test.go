package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
)

// stalledPatch starts a PATCH of size bytes at offset 0 that sends first
// and then nothing more, and waits until the server has read first.
func (e *env) stalledPatch(c created, size int, first []byte) *rawConn {
	e.t.Helper()
	rc := e.startPatch(c, size, first)
	waitFor(e.t, "the server to read the first bytes", func() bool {
		return e.srv.metrics.bytesReceived.Load() >= int64(len(first))
	})
	return rc
}

func errorCode(t *testing.T, r resp) string {
	t.Helper()
	var b errorBody
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	return b.Error.Code
}

// TestNewerPatchTakesOver: a PATCH on an upload whose last PATCH stalls
// (a client that vanished without closing) does not wait for the idle
// timeout: the stalled write lets go at once, commits what it read, and
// answers 409; the newer request sees the offset as it now stands (409,
// then HEAD + PATCH from there are accepted), and the object is the old
// request's prefix followed by the new bytes.
func TestNewerPatchTakesOver(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BodyIdleTimeout = time.Minute }, nil)
	size := 1 << 20
	sent := 64 << 10
	c := e.create("acme", int64(size))
	a, b := bytes.Repeat([]byte("A"), size), bytes.Repeat([]byte("B"), size)
	old := e.stalledPatch(c, size, a[:sent])

	start := time.Now()
	r := e.patch("acme", c.Location, 0, b)
	if r.status != http.StatusConflict || errorCode(t, r) != "offset_mismatch" {
		t.Fatalf("newer PATCH at 0: %d %s, want 409 offset_mismatch (the old write committed what it read)", r.status, r.body)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("newer PATCH took %v, want well under 1s", took)
	}
	if r := old.read("PATCH"); r.status != http.StatusConflict || errorCode(t, r) != "upload_taken_over" {
		t.Errorf("stalled PATCH: %d %s, want 409 upload_taken_over", r.status, r.body)
	}
	h := e.head("acme", c.Location)
	if got := h.h.Get("Upload-Offset"); got != strconv.Itoa(sent) {
		t.Fatalf("HEAD after takeover: offset %s, want %d", got, sent)
	}
	if r := e.patch("acme", c.Location, int64(sent), b[sent:]); r.status != http.StatusNoContent {
		t.Fatalf("PATCH from the new offset: %d %s, want 204", r.status, r.body)
	}
	want := append(append([]byte{}, a[:sent]...), b[sent:]...)
	if !bytes.Equal(e.stored(c.SessionID), want) {
		t.Errorf("stored bytes are not the stalled write's prefix followed by the newer one's")
	}
	e.wantReady("acme", c.SessionID, want)
	if got := e.srv.metrics.takeovers.Load(); got != 1 {
		t.Errorf("takeovers: got %d, want 1", got)
	}
}

// TestDeleteTakesOver: DELETE during a PATCH that streams: the PATCH ends
// with 404 (not a retryable 423), the DELETE answers 204, the bytes are
// freed.
func TestDeleteTakesOver(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BodyIdleTimeout = time.Minute }, nil)
	size := 1 << 20
	c := e.create("acme", int64(size))
	old := e.stalledPatch(c, size, bytes.Repeat([]byte("A"), 64<<10))

	start := time.Now()
	req, _ := http.NewRequest(http.MethodDelete, c.Location, nil)
	req.Header = e.tusHdr("acme")
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("DELETE: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE during a PATCH: %d, want 204", res.StatusCode)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("DELETE took %v, want well under 1s", took)
	}
	if r := old.read("PATCH"); r.status != http.StatusNotFound || errorCode(t, r) != "upload_deleted" {
		t.Errorf("PATCH whose upload was deleted under it: %d %s, want 404 upload_deleted", r.status, r.body)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "uploads", c.SessionID)); !os.IsNotExist(err) {
		t.Errorf("stored file after DELETE: %v, want it gone", err)
	}
	if r := e.head("acme", c.Location); r.status != http.StatusNotFound {
		t.Errorf("HEAD after DELETE: %d, want 404", r.status)
	}
}

// TestDeleteBeforeLease: a PATCH whose upload is deleted after the PATCH
// read it and before it took the lease answers 404 upload_deleted, as when
// the DELETE takes the upload over mid-write (not the plain not_found of
// an upload that never existed).
func TestDeleteBeforeLease(t *testing.T) {
	e, fs := newFlakyEnv(t, nil)
	c := e.create("acme", 10)
	fs.deleteFirst.Store(&c.SessionID)
	if r := e.patch("acme", c.Location, 0, []byte("0123456789")); r.status != http.StatusNotFound || errorCode(t, r) != "upload_deleted" {
		t.Errorf("PATCH whose upload was deleted before its lease: %d %s, want 404 upload_deleted", r.status, r.body)
	}
	if fs.deleteFirst.Load() != nil {
		t.Fatal("the PATCH never took a lease: the test did not run the race")
	}
	if r := e.patch("acme", c.Location, 0, []byte("0123456789")); r.status != http.StatusNotFound || errorCode(t, r) != "not_found" {
		t.Errorf("PATCH after the delete: %d %s, want 404 not_found", r.status, r.body)
	}
}

// TestHeadTakesOver: offset retrieval during a streaming write takes the
// upload over like a newer PATCH: the write stops, commits what it stored
// and answers 409 upload_taken_over; HEAD answers after that, so a PATCH
// at its offset is accepted (the draft: the offset MUST be accepted by a
// subsequent append). Progress is the assets API's bytes_received.
func TestHeadTakesOver(t *testing.T) {
	e := newEnv(t, nil, nil)
	size := 256 << 10
	c := e.create("acme", int64(size))
	data := randomBytes(t, size)
	rc := e.stalledPatch(c, size, data[:64<<10])
	r := e.head("acme", c.Location)
	if r.status != http.StatusOK {
		t.Fatalf("HEAD while a PATCH streams: %d %s", r.status, r.body)
	}
	off, err := strconv.Atoi(r.h.Get("Upload-Offset"))
	if err != nil || off > 64<<10 {
		t.Fatalf("HEAD's Upload-Offset: got %q, want at most %d", r.h.Get("Upload-Offset"), 64<<10)
	}
	if r := rc.read("PATCH"); r.status != http.StatusConflict || errorCode(t, r) != "upload_taken_over" {
		t.Fatalf("PATCH taken over by HEAD: %d %s, want 409 upload_taken_over", r.status, r.body)
	}
	if got := e.srv.metrics.takeovers.Load(); got != 1 {
		t.Errorf("takeovers: got %d, want 1", got)
	}
	if r := e.patch("acme", c.Location, int64(off), data[off:]); r.status != http.StatusNoContent {
		t.Fatalf("PATCH at HEAD's offset %d: %d %s, want 204", off, r.status, r.body)
	}
	e.wantReady("acme", c.SessionID, data)
}

// TestOrphanedLeaseDropped: a lease this node took whose answer was lost
// (a Redis outage: the store granted it, no request knows it holds it)
// does not block the upload for the lease's TTL: after the takeover wait
// the PATCH drops it and proceeds.
func TestOrphanedLeaseDropped(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.LeaseTTL = time.Minute
		c.TakeoverWait = 300 * time.Millisecond
	}, nil)
	c := e.create("acme", 10)
	if _, err := e.store.AcquireLease(t.Context(), c.SessionID, time.Minute, 0); err != nil {
		t.Fatalf("AcquireLease: %v", err)
	}
	start := time.Now()
	if r := e.patch("acme", c.Location, 0, []byte("0123456789")); r.status != http.StatusNoContent {
		t.Fatalf("PATCH on an upload with an orphaned lease: %d %s, want 204", r.status, r.body)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("PATCH took %v", took)
	}
	e.wantReady("acme", c.SessionID, []byte("0123456789"))
}

// TestOrphanedLeaseDroppedOnRequests: release requests that keep coming
// from another node for an upload no write of this node holds (its lease
// an orphan) make this node drop its lease within the asker's wait.
func TestOrphanedLeaseDroppedOnRequests(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TakeoverWait = 400 * time.Millisecond }, nil)
	c := e.create("acme", 10)
	l, err := e.store.AcquireLease(t.Context(), c.SessionID, time.Minute, 0)
	if err != nil {
		t.Fatalf("AcquireLease: %v", err)
	}
	ask := func() { e.srv.leases.OnRelease(sessionstore.ReleaseRequest{SessionID: c.SessionID, Token: l.Token}) }
	ask()
	if _, err := e.store.AcquireLease(t.Context(), c.SessionID, time.Minute, 0); !errors.Is(err, sessionstore.ErrLocked) {
		t.Fatalf("AcquireLease after one release request: got %v, want ErrLocked (not dropped on the first)", err)
	}
	time.Sleep(350 * time.Millisecond) // three quarters of the wait
	ask()
	if _, err := e.store.AcquireLease(t.Context(), c.SessionID, time.Minute, 0); err != nil {
		t.Fatalf("AcquireLease after release requests for most of the wait: %v", err)
	}
}

// slowAbort is a sink whose first Abort waits until unblock closes (a
// slow S3 abort); aborting closes when it starts.
type slowAbort struct {
	pipeline.Sink
	once     sync.Once
	aborting chan struct{}
	unblock  chan struct{}
}

func newSlowAbort() *slowAbort {
	return &slowAbort{aborting: make(chan struct{}), unblock: make(chan struct{})}
}

func (s *slowAbort) Abort(ctx context.Context, u pipeline.Upload) error {
	first := false
	s.once.Do(func() { first = true })
	if first {
		close(s.aborting)
		<-s.unblock
	}
	return s.Sink.Abort(ctx, u)
}

// TestDeleteKeepsLeaseAgainstPatch: a PATCH that comes while a DELETE is
// slow in freeing the storage does not get the upload: the DELETE's lease
// is no orphan, however long the PATCH asks for it. Dropped, the PATCH
// wrote and was acknowledged, and the DELETE then deleted its bytes.
func TestDeleteKeepsLeaseAgainstPatch(t *testing.T) {
	sa := newSlowAbort()
	e := newEnvSink(t, func(c *Config) { c.TakeoverWait = 400 * time.Millisecond }, nil,
		func(s pipeline.Sink) pipeline.Sink { sa.Sink = s; return sa })
	c := e.create("acme", 10)
	deleted := make(chan resp, 1)
	go func() { deleted <- e.do(http.MethodDelete, c.Location, e.tusHdr("acme"), nil) }()
	<-sa.aborting
	r := e.patch("acme", c.Location, 0, []byte("0123456789"))
	close(sa.unblock)
	if d := <-deleted; d.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s, want 204", d.status, d.body)
	}
	if r.status != http.StatusLocked {
		t.Errorf("PATCH while a DELETE frees the storage: %d %s, want 423 (acknowledged bytes deleted)", r.status, r.body)
	}
	if h := e.head("acme", c.Location); h.status != http.StatusNotFound {
		t.Errorf("HEAD after DELETE: %d, want 404", h.status)
	}
}

// TestJanitorKeepsLease: release requests for the lease of the janitor
// (slow in freeing an expired upload's storage) never drop it, however
// long they come: dropped, a newer request could commit to the upload and
// the janitor would then delete it.
func TestJanitorKeepsLease(t *testing.T) {
	sa := newSlowAbort()
	e := newEnvSink(t, func(c *Config) {
		c.TakeoverWait = 400 * time.Millisecond
		c.UploadExpiry = time.Millisecond
		c.LeaseTTL = time.Minute
	}, nil, func(s pipeline.Sink) pipeline.Sink { sa.Sink = s; return sa })
	c := e.create("acme", 10)
	time.Sleep(5 * time.Millisecond) // past the upload's expiry
	swept := make(chan int, 1)
	go func() { swept <- e.srv.svc.Sweep(t.Context(), time.Now()) }()
	<-sa.aborting
	_, err := e.store.AcquireLease(t.Context(), c.SessionID, time.Minute, 0)
	le, ok := errors.AsType[*sessionstore.LockedError](err)
	if !ok {
		t.Fatalf("AcquireLease while the janitor frees the upload: got %v, want a *LockedError", err)
	}
	ask := func() { e.srv.leases.OnRelease(sessionstore.ReleaseRequest{SessionID: c.SessionID, Token: le.Token}) }
	ask()
	time.Sleep(350 * time.Millisecond) // three quarters of the wait
	ask()
	_, err = e.store.AcquireLease(t.Context(), c.SessionID, time.Minute, 0)
	close(sa.unblock)
	if n := <-swept; n != 1 {
		t.Errorf("janitor freed %d uploads, want 1", n)
	}
	if !errors.Is(err, sessionstore.ErrLocked) {
		t.Fatalf("AcquireLease after release requests for the janitor's lease: got %v, want ErrLocked (the janitor's lease dropped)", err)
	}
}
