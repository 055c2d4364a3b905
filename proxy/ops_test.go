package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"

	"github.com/roughy/ingest/sessionstore/bolt"
)

func TestHealthReadyMetrics(t *testing.T) {
	e := newEnv(t, nil, nil)
	if r := e.do("GET", "/healthz", nil, nil); r.status != http.StatusOK {
		t.Errorf("healthz: %d", r.status)
	}
	if r := e.do("GET", "/readyz", nil, nil); r.status != http.StatusOK {
		t.Errorf("readyz: %d %s", r.status, r.body)
	}
	c := e.create("acme", 1000)
	e.patch("acme", c.Location, 0, make([]byte, 1000))
	e.head("globex", c.Location)
	r := e.do("GET", "/metrics", nil, nil)
	if r.status != http.StatusOK || !strings.HasPrefix(r.h.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: %d %q", r.status, r.h.Get("Content-Type"))
	}
	body := string(r.body)
	for _, want := range []string{
		`roughy_http_requests_total{method="PATCH",route="tus_upload",status="204"} 1`,
		`roughy_http_requests_total{method="HEAD",route="tus_upload",status="404"} 1`,
		`roughy_http_requests_total{method="POST",route="tus_create",status="201"} 1`,
		"roughy_upload_bytes_received_total 1000",
		"roughy_uploads_completed_total 1",
		"roughy_active_uploads 0",
		`roughy_http_request_duration_seconds_bucket{route="tus_upload",le="+Inf"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, e.keys["acme"]) {
		t.Errorf("metrics contain an API key")
	}
	if r := e.do("GET", "/nope", nil, nil); r.status != http.StatusNotFound || r.errorCode() != "not_found" {
		t.Errorf("unknown path: %d %s", r.status, r.body)
	}
	e.wantReady("acme", c.SessionID, make([]byte, 1000))
}

// TestShutdownDrains: Shutdown stops accepting, lets an in-flight PATCH
// finish and commit, then returns.
func TestShutdownDrains(t *testing.T) {
	e := newEnv(t, nil, nil)
	size := 256 << 10
	c := e.create("acme", int64(size))
	data := randomBytes(t, size)
	rc := e.startPatch(c, size, data[:64<<10])

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- e.srv.Shutdown(ctx)
	}()
	// New connections are refused once the listener is closed.
	waitFor(t, "the listener to close", func() bool {
		conn, err := net.DialTimeout("tcp", e.addr, time.Second)
		if err != nil {
			return true
		}
		conn.Close()
		return false
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a PATCH was in flight", err)
	default:
	}
	rc.write(data[64<<10:])
	r := rc.read("PATCH")
	if r.status != http.StatusNoContent || r.h.Get("Upload-Offset") != strconv.Itoa(size) {
		t.Fatalf("in-flight PATCH during shutdown: %d %q %s, want 204", r.status, r.h.Get("Upload-Offset"), r.body)
	}
	// The connection is closed after the response (Connection: close).
	if err := rc.c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := rc.br.Read(make([]byte, 1)); err == nil {
		t.Errorf("connection still open after the response during shutdown (read %d bytes)", n)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the PATCH finished")
	}
	// The server is shut down: read the sink's file instead of a download.
	if err := testsvc.SameBytes(e.stored(c.SessionID), data); err != nil {
		t.Errorf("stored bytes after a drained shutdown: %v", err)
	}
}

// TestLeaseRenewedWhileStreaming: a PATCH slower than the lease TTL keeps
// its lease (renewed while it streams): the lease is still held, well
// past its TTL. (A newer PATCH would take it over: takeover_test.go.)
func TestLeaseRenewedWhileStreaming(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.LeaseTTL = 600 * time.Millisecond }, nil)
	size := 128 << 10
	c := e.create("acme", int64(size))
	data := randomBytes(t, size)
	rc := e.startPatch(c, size, data[:32<<10])
	time.Sleep(1500 * time.Millisecond) // well past the TTL
	if _, err := e.store.AcquireLease(t.Context(), c.SessionID, time.Second, 0); !errors.Is(err, sessionstore.ErrLocked) {
		t.Errorf("AcquireLease after the PATCH outlived its TTL: got %v, want ErrLocked", err)
	}
	rc.write(data[32<<10:])
	if r := rc.read("PATCH"); r.status != http.StatusNoContent {
		t.Fatalf("slow PATCH: %d %s, want 204", r.status, r.body)
	}
	if _, a := e.getAsset("acme", c.SessionID); a.SHA256 != sha256Hex(data) {
		t.Errorf("sha256 %q, want %q", a.SHA256, sha256Hex(data))
	}
	e.wantReady("acme", c.SessionID, data)
}

// TestIdleBodyTimeout: a client that stops sending mid-body is cut off
// after the idle timeout; what arrived before is kept.
func TestIdleBodyTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BodyIdleTimeout = 1500 * time.Millisecond }, nil)
	size := 256 << 10
	c := e.create("acme", int64(size))
	data := randomBytes(t, size)
	rc := e.raw()
	sent := 100 << 10
	rc.send("PATCH", c.Location[len(e.url):], e.tusHdr("acme", "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream",
		"Content-Length", strconv.Itoa(size)), data[:sent])
	start := time.Now()
	r := rc.read("PATCH")
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("stalled body answered after %v", took)
	}
	if r.status < 400 {
		t.Errorf("stalled PATCH: %d, want an error", r.status)
	}
	h := e.head("acme", c.Location)
	off, _ := strconv.Atoi(h.h.Get("Upload-Offset"))
	if off != sent {
		t.Errorf("offset after the stall = %d, want the %d bytes that arrived", off, sent)
	}
	if r := e.patch("acme", c.Location, int64(off), data[off:]); r.status != http.StatusNoContent {
		t.Fatalf("resume after the stall: %d %s", r.status, r.body)
	}
	e.wantReady("acme", c.SessionID, data)
}

// TestHeadFinishesFullUpload: an upload whose bytes were all committed but
// that was not marked complete (a crash in between) is completed by HEAD.
func TestHeadFinishesFullUpload(t *testing.T) {
	e := newEnv(t, nil, nil)
	data := []byte("all of the bytes")
	c := e.create("acme", int64(len(data)))
	if err := os.WriteFile(filepath.Join(e.dir, "uploads", c.SessionID), data, 0o600); err != nil {
		t.Fatal(err)
	}
	h, _ := pipeline.ResumeHash(nil)
	h.Write(data)
	ctx := t.Context()
	l, err := e.store.AcquireLease(ctx, c.SessionID, time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Commit(ctx, l, sessionstore.Commit{ExpectOffset: 0, NewOffset: int64(len(data)), HashState: pipeline.MarshalHash(h), Length: -1}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.ReleaseLease(ctx, l); err != nil {
		t.Fatal(err)
	}
	if _, a := e.getAsset("acme", c.SessionID); a.State != "uploading" {
		t.Fatalf("asset before HEAD: %q, want uploading", a.State)
	}
	if r := e.head("acme", c.Location); r.status != http.StatusOK || r.h.Get("Upload-Offset") != strconv.Itoa(len(data)) {
		t.Fatalf("HEAD: %d %q", r.status, r.h.Get("Upload-Offset"))
	}
	if _, a := e.getAsset("acme", c.SessionID); a.State != "ready" || a.SHA256 != sha256Hex(data) {
		t.Errorf("asset after HEAD: %+v, want ready with sha256 %s", a, sha256Hex(data))
	}
	e.wantReady("acme", c.SessionID, data)
}

// TestShutdownTimeoutCommitsStalledPatch: when the drain limit passes, a
// PATCH whose client stalled is cut off, and what it sent is committed.
func TestShutdownTimeoutCommitsStalledPatch(t *testing.T) {
	e := newEnv(t, nil, nil)
	size := 256 << 10
	c := e.create("acme", int64(size))
	data := randomBytes(t, size)
	rc := e.raw()
	sent := 100 << 10
	rc.send("PATCH", c.Location[len(e.url):], e.tusHdr("acme", "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream",
		"Content-Length", strconv.Itoa(size)), data[:sent])
	waitFor(t, "the PATCH to stream", func() bool { return e.srv.metrics.activeUploads.Load() == 1 })
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := e.srv.Shutdown(ctx); err == nil {
		t.Errorf("Shutdown with a stalled PATCH returned nil, want the context's error")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Shutdown took %v", took)
	}
	if r := rc.read("PATCH"); r.status < 400 {
		t.Errorf("cut-off PATCH: %d, want an error", r.status)
	}
	sess, err := e.store.Session(t.Context(), c.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if sess.Offset != int64(sent) {
		t.Errorf("committed offset after the cut = %d, want the %d bytes sent", sess.Offset, sent)
	}
}

// renewCounter counts lease renewals.
type renewCounter struct {
	*bolt.Store
	renewals atomic.Int64
}

func (r *renewCounter) RenewLease(ctx context.Context, l sessionstore.Lease, ttl time.Duration) (sessionstore.Lease, error) {
	r.renewals.Add(1)
	return r.Store.RenewLease(ctx, l, ttl)
}

// TestCommitsStandInForRenewals: while commits extend the lease (every
// part does), the keeper sends no renewals; once they stop, it renews
// again and the lease outlives its TTL.
func TestCommitsStandInForRenewals(t *testing.T) {
	var rc *renewCounter
	// A commit every 100 ms against renewals due every TTL/3 = 500 ms:
	// only a stall of 400 ms would make one due.
	e := newEnv(t, func(c *Config) { c.LeaseTTL = 1500 * time.Millisecond }, func(s sessionstore.Store) sessionstore.Store {
		rc = &renewCounter{Store: s.(*bolt.Store)}
		return rc
	})
	c := e.create("acme", 100)
	ctx := t.Context()
	l, err := e.store.AcquireLease(ctx, c.SessionID, e.srv.cfg.LeaseTTL, 0)
	if err != nil {
		t.Fatal(err)
	}
	lh, _, release := e.srv.leases.Hold(ctx, l)
	defer release()
	off := int64(0)
	for range 20 { // 2 s, past the TTL
		time.Sleep(100 * time.Millisecond)
		start := time.Now()
		if _, err := e.store.Commit(ctx, lh.Lease(), sessionstore.Commit{ExpectOffset: off, NewOffset: off + 1,
			Length: -1, ExtendLease: e.srv.cfg.LeaseTTL}); err != nil {
			t.Fatalf("commit at %d: %v", off, err)
		}
		lh.Extended(start, e.srv.cfg.LeaseTTL)
		off++
	}
	if n := rc.renewals.Load(); n != 0 {
		t.Errorf("%d renewals while commits extended the lease, want 0", n)
	}
	time.Sleep(1700 * time.Millisecond) // no commits, past the TTL: the keeper renews
	if n := rc.renewals.Load(); n == 0 {
		t.Error("no renewals once commits stopped")
	}
	if _, err := e.store.Commit(ctx, lh.Lease(), sessionstore.Commit{ExpectOffset: off, NewOffset: off + 1, Length: -1}); err != nil {
		t.Errorf("commit after the renewals: %v (lease lost)", err)
	}
}
