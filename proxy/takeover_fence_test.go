package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/sessionstore/redis"
)

// gatedStore holds one lease acquisition of one upload until the test
// lets it go: the nth acquisition of upload id (counted from 1) waits on
// release after it closed reached. It puts an offset retrieval on another
// node exactly where no lease shows the write in the store.
type gatedStore struct {
	sessionstore.Store
	id      atomic.Pointer[string]
	n       int32
	calls   atomic.Int32
	reached chan struct{}
	release chan struct{}
}

func newGatedStore(inner sessionstore.Store, n int32) *gatedStore {
	return &gatedStore{Store: inner, n: n, reached: make(chan struct{}), release: make(chan struct{})}
}

func (g *gatedStore) gate(ctx context.Context, id string) {
	if p := g.id.Load(); p == nil || *p != id || g.calls.Add(1) != g.n {
		return
	}
	close(g.reached)
	select {
	case <-g.release:
	case <-ctx.Done():
	}
}

func (g *gatedStore) AcquireLease(ctx context.Context, id string, ttl time.Duration, parts int32) (sessionstore.Lease, error) {
	g.gate(ctx, id)
	return g.Store.AcquireLease(ctx, id, ttl, parts)
}

func (g *gatedStore) AcquireLeaseFenced(ctx context.Context, id string, ttl time.Duration, parts int32, fence int64) (sessionstore.Lease, error) {
	g.gate(ctx, id)
	return g.Store.AcquireLeaseFenced(ctx, id, ttl, parts, fence)
}

// newGatedNode is a second node on the Redis at url, writing to sink,
// whose store is gated on the nth lease acquisition of an upload.
func newGatedNode(t *testing.T, url string, sink pipeline.Sink, n int32) (*env, *gatedStore) {
	t.Helper()
	rs, err := redis.New(t.Context(), url)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { rs.Close() })
	g := newGatedStore(rs, n)
	e := newEnvSink(t, nil, func(sessionstore.Store) sessionstore.Store { return g },
		func(pipeline.Sink) pipeline.Sink { return sink })
	for account := range e.keys {
		secret, k := apikey.New(account)
		if err := rs.CreateKey(context.Background(), k); err != nil {
			t.Fatalf("CreateKey: %v", err)
		}
		e.keys[account] = secret
	}
	return e, g
}

// sent is the outcome of a request sent in the background.
type sent struct {
	r   resp
	err error
}

// send sends a request from another goroutine; its outcome arrives on
// the returned channel (a transport error too: a server that refuses a
// body it did not read may close the connection before the client sent it
// all).
func (e *env) send(method, target string, h http.Header, body []byte) <-chan sent {
	out := make(chan sent, 1)
	go func() {
		req, err := http.NewRequest(method, target, bytes.NewReader(body))
		if err != nil {
			out <- sent{err: err}
			return
		}
		req.Header = h
		req.ContentLength = int64(len(body))
		r, err := e.client.Do(req)
		if err != nil {
			out <- sent{err: err}
			return
		}
		defer r.Body.Close()
		b, err := io.ReadAll(r.Body)
		out <- sent{r: resp{status: r.StatusCode, text: r.Status, h: r.Header, body: b}, err: err}
	}()
	return out
}

// TestHeadFencesRequestBeforeLease: a PATCH on node B that read the
// upload but has not taken its lease yet holds nothing HEAD on node A can
// see. The offset HEAD answers must still be accepted by the next append:
// the PATCH on B lets go when it reaches the lease (409
// upload_taken_over, nothing read), and the append at HEAD's offset on A
// is accepted.
func TestHeadFencesRequestBeforeLease(t *testing.T) {
	url := testsvc.StartRedis(t)
	a := newRedisEnvOn(t, url, nil, nil)
	b, g := newGatedNode(t, url, a.srv.pipe.Sink(), 1)
	size := 1 << 20
	data := randomBytes(t, size)
	c := a.create("acme", int64(size))
	g.id.Store(&c.SessionID)
	onB := b.url + strings.TrimPrefix(c.Location, a.url)

	h := b.tusHdr("acme", "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream")
	onBDone := b.send("PATCH", onB, h, data[:size/2])
	<-g.reached
	r := a.head("acme", c.Location)
	if r.status != http.StatusOK {
		t.Fatalf("HEAD on node A: %d %s", r.status, r.body)
	}
	off, err := strconv.Atoi(r.h.Get("Upload-Offset"))
	if err != nil {
		t.Fatalf("HEAD's Upload-Offset %q: %v", r.h.Get("Upload-Offset"), err)
	}
	close(g.release)
	if s := <-onBDone; s.err == nil && (s.r.status != http.StatusConflict || errorCode(t, s.r) != "upload_taken_over") {
		t.Errorf("PATCH on node B after HEAD on node A: %d %s, want 409 upload_taken_over", s.r.status, s.r.body)
	}
	if r := a.patch("acme", c.Location, int64(off), data[off:]); r.status != http.StatusNoContent {
		t.Fatalf("PATCH on node A at HEAD's offset %d: %d %s, want 204", off, r.status, r.body)
	}
	a.wantReady("acme", c.SessionID, data)
}

// TestHeadFencesNextSegment: a draft append of more than MaxChunk on
// node B is written in segments, each under a lease of its own; between
// two of them no lease shows it in the store. HEAD on node A there
// answers the offset of the first segment, and the append at that offset
// is accepted: the second segment lets go instead of taking the lease.
func TestHeadFencesNextSegment(t *testing.T) {
	url := testsvc.StartRedis(t)
	a := newRedisEnvOn(t, url, nil, nil)
	b, g := newGatedNode(t, url, a.srv.pipe.Sink(), 2)
	size := pipeline.MaxChunk + 1<<20
	data := randomBytes(t, size)
	c := a.create("acme", int64(size))
	g.id.Store(&c.SessionID)
	onB := b.url + strings.TrimPrefix(c.Location, a.url)

	sentB := pipeline.MaxChunk + 512<<10
	h := b.draftHdr("acme", "Upload-Offset", "0", "Upload-Complete", "?0", "Content-Type", partialUploadType)
	onBDone := b.send("PATCH", onB, h, data[:sentB])
	<-g.reached
	r := a.do("HEAD", c.Location, a.draftHdr("acme"), nil)
	if r.status != http.StatusNoContent && r.status != http.StatusOK {
		t.Fatalf("HEAD on node A: %d %s", r.status, r.body)
	}
	off, err := strconv.Atoi(r.h.Get("Upload-Offset"))
	if err != nil {
		t.Fatalf("HEAD's Upload-Offset %q: %v", r.h.Get("Upload-Offset"), err)
	}
	close(g.release)
	if s := <-onBDone; s.err == nil && (s.r.status != http.StatusConflict || !bytes.Contains(s.r.body, []byte("upload_taken_over"))) {
		t.Errorf("append on node B after HEAD on node A: %d %s, want 409 upload_taken_over", s.r.status, s.r.body)
	}
	ap := a.do("PATCH", c.Location, a.draftHdr("acme", "Upload-Offset", strconv.Itoa(off), "Upload-Complete", "?1",
		"Content-Type", partialUploadType), data[off:])
	if ap.status != http.StatusOK {
		t.Fatalf("append on node A at HEAD's offset %d: %d %.300s, want 200", off, ap.status, ap.body)
	}
	a.wantReady("acme", c.SessionID, data)
}
