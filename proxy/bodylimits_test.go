package proxy

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// openPatch sends the head of a PATCH at offset 0 of c for account that
// declares size bytes, with first as the start of its body; the caller
// writes the rest on the returned connection.
func (e *env) openPatch(account string, c created, size int, first []byte) *rawConn {
	e.t.Helper()
	rc := e.raw()
	rc.send("PATCH", c.Location[len(e.url):], e.tusHdr(account, "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream",
		"Content-Length", strconv.Itoa(size)), first)
	return rc
}

// TestAccountBodyCap: one account streams at most MaxAccountBodies bodies
// to a node at once; the next gets 503 with Retry-After before its body is
// read, while another account is not affected, and a slot is free again
// once a body ended.
func TestAccountBodyCap(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxAccountBodies = 2 }, nil)
	const size = 1 << 20
	data := randomBytes(t, size)
	var open []*rawConn
	var first created
	for i := range 2 {
		c := e.create("acme", size)
		if i == 0 {
			first = c
		}
		open = append(open, e.openPatch("acme", c, size, data[:64<<10]))
		waitFor(t, "the PATCH to stream", func() bool { return e.srv.metrics.activeUploads.Load() == int64(i+1) })
	}

	third := e.create("acme", 100)
	r := e.patch("acme", third.Location, 0, data[:100])
	if r.status != http.StatusServiceUnavailable || r.errorCode() != "too_many_uploads" || r.h.Get("Retry-After") == "" {
		t.Fatalf("third concurrent PATCH of acme: %d %q Retry-After %q; want 503 too_many_uploads with Retry-After",
			r.status, r.errorCode(), r.h.Get("Retry-After"))
	}
	if h := e.head("acme", third.Location); h.h.Get("Upload-Offset") != "0" {
		t.Fatalf("offset after the 503: %q, want 0", h.h.Get("Upload-Offset"))
	}
	other := e.create("globex", 100)
	if r := e.patch("globex", other.Location, 0, data[:100]); r.status != http.StatusNoContent {
		t.Fatalf("PATCH of globex while acme is at its cap: %d %s, want 204", r.status, r.body)
	}

	open[0].write(data[64<<10:])
	if r := open[0].read("PATCH"); r.status != http.StatusNoContent {
		t.Fatalf("first PATCH: %d %s, want 204", r.status, r.body)
	}
	if r := e.patch("acme", third.Location, 0, data[:100]); r.status != http.StatusNoContent {
		t.Fatalf("acme PATCH after one of its bodies ended: %d %s, want 204", r.status, r.body)
	}
	open[1].c.Close()
	e.wantReady("globex", other.SessionID, data[:100])
	e.wantReady("acme", first.SessionID, data)
	e.wantReady("acme", third.SessionID, data[:100])
}

// TestSlowBodyCutOff: a body slower than MinBodyRate over the window is
// cut off with 408 body_too_slow (what was durable stays committed), and
// the upload is free at once for the next PATCH; a slow body above the
// rate is not cut off. Each body starts with more than the 8 KiB fasthttp
// reads before the handler runs (that read is bounded by ReadTimeout).
func TestSlowBodyCutOff(t *testing.T) {
	const window = time.Second
	const head = 9000
	e := newEnv(t, func(c *Config) { c.MinBodyRate, c.MinBodyRateWindow = 1000, window }, nil)
	data := randomBytes(t, 24000)

	c := e.create("acme", int64(len(data)))
	rc := e.openPatch("acme", c, 15000, data[:head])
	start := time.Now()
	go func() {
		// 10 bytes a second, a hundredth of the minimum.
		for i := head; i < head+50; i++ {
			time.Sleep(100 * time.Millisecond)
			if _, err := rc.c.Write(data[i : i+1]); err != nil {
				return
			}
		}
	}()
	r := rc.read("PATCH")
	took := time.Since(start)
	if r.status != http.StatusRequestTimeout || r.errorCode() != "body_too_slow" {
		t.Fatalf("dripping PATCH: %d %s, want 408 body_too_slow", r.status, r.body)
	}
	if took < window || took > 3*window {
		t.Fatalf("dripping PATCH cut off after %v, want about the window (%v)", took, window)
	}
	off, err := strconv.ParseInt(e.head("acme", c.Location).h.Get("Upload-Offset"), 10, 64)
	if err != nil || off < head || off > head+50 {
		t.Fatalf("offset after the cut: %d, %v; want the %d bytes sent at once and at most the drip", off, err, head)
	}

	// The lease went with the cut, so the next PATCH is not locked out.
	// It sends 1500 bytes a second after its head: slow, but above the
	// minimum.
	rest := data[off:]
	rc2 := e.raw()
	rc2.send("PATCH", c.Location[len(e.url):], e.tusHdr("acme", "Upload-Offset", strconv.FormatInt(off, 10),
		"Content-Type", "application/offset+octet-stream", "Content-Length", strconv.Itoa(len(rest))), rest[:head])
	go func() {
		for p := rest[head:]; len(p) > 0; p = p[min(375, len(p)):] {
			time.Sleep(250 * time.Millisecond)
			if _, err := rc2.c.Write(p[:min(375, len(p))]); err != nil {
				return
			}
		}
	}()
	if r := rc2.read("PATCH"); r.status != http.StatusNoContent {
		t.Fatalf("slow PATCH above the minimum rate: %d %s, want 204", r.status, r.body)
	}
	if _, a := e.getAsset("acme", c.SessionID); a.State != "ready" || a.SHA256 != sha256Hex(data) {
		t.Fatalf("asset: %s %s, want ready with sha256 %s", a.State, a.SHA256, sha256Hex(data))
	}
	e.wantReady("acme", c.SessionID, data)
}
