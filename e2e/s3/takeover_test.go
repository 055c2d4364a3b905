package s3e2e

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/roughy/ingest/internal/testsvc"
)

// heldS3 is a proxy in front of gw that, once armed, holds every part
// and object upload it has read whole until released: S3 slow to answer
// a part whose body went out whole.
type heldS3 struct {
	URL      string
	armed    atomic.Bool
	received chan struct{}
	hold     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
}

func startHeldS3(t *testing.T, gw *gateway) *heldS3 {
	t.Helper()
	target, err := url.Parse(gw.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	h := &heldS3{received: make(chan struct{}, 16), hold: make(chan struct{})}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host     // the sink signed the request for this host
		r.Out.Header.Del("Expect") // the body is read already
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || !h.armed.Load() {
			rp.ServeHTTP(w, r)
			return
		}
		h.wg.Add(1)
		defer h.wg.Done()
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return // cut by roughy before it was whole: S3 stores nothing
		}
		h.received <- struct{}{}
		<-h.hold
		r.Body = io.NopCloser(bytes.NewReader(body))
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(h.release) // before the server closes: cleanups run last first
	h.URL = srv.URL
	return h
}

// release lets every held upload go on to S3 and waits until S3 answered
// them all.
func (h *heldS3) release() {
	h.once.Do(func() { close(h.hold) })
	h.wg.Wait()
}

// TestDeleteWhilePartInFlight: a DELETE that goes ahead after the takeover
// wait while the PATCH it took over still has a part in flight (its body
// sent whole, S3 slow to answer) leaves nothing in S3 once that part
// landed: no multipart upload (versitygw recreates one for a late part),
// no object or tail.
func TestDeleteWhilePartInFlight(t *testing.T) {
	gw := startGateway(t, testsvc.Versitygw) // behind the holding proxy
	s3 := startHeldS3(t, gw)
	srv := startRoughy(t, gw, "--s3-endpoint", s3.URL, "--takeover-wait", "500ms")
	ctx := testCtx(t)
	c := newClient(t, srv, acmeKey)
	const size = 40 * mib
	src := randomBytes(t, size, 31)
	loc, id := c.create(ctx, size, videoMD("video/mp4"), nil)

	s3.armed.Store(true)
	p := c.openRawPatch(loc, 0, size)
	p.write(t, src[:20*mib])
	select { // a part is whole at "S3", which does not answer yet
	case <-s3.received:
	case <-ctx.Done():
		t.Fatal("no part or tail reached S3")
	}

	if r := c.must(ctx, http.MethodDelete, loc, nil, nil); r.Status != http.StatusNoContent {
		t.Fatalf("DELETE: %v, want 204", r)
	}
	s3.release()
	res, err := http.ReadResponse(bufio.NewReader(p.conn), nil)
	if err != nil {
		t.Fatalf("PATCH reply: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("PATCH taken over by the DELETE: %d, want 404", res.StatusCode)
	}

	gw.checkNoMultipartUploads(ctx, "after the DELETE and the late part")
	var left []string
	for _, k := range gw.Objects(ctx, "") {
		if strings.Contains(k, id) {
			left = append(left, k)
		}
	}
	if len(left) != 0 {
		t.Errorf("after the DELETE and the late part: objects %q left, want none", left)
	}
	if st, _ := c.head(ctx, loc); st != http.StatusNotFound && st != http.StatusGone {
		t.Errorf("HEAD after DELETE: %d, want 404 or 410", st)
	}
}
