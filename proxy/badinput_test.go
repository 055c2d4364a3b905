package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/roughy/ingest/sessionstore"

	"github.com/roughy/ingest/sessionstore/bolt"
)

// TestBadInput has one case per row of SPEC's bad-input table (the
// concurrent-PATCH, expiry and outage rows have their own tests below).
func TestBadInput(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := e.create("acme", 1000)
	videoMD := md("type", "video")
	unknown := uploadsPath + "/019deafa-0000-7000-8000-00000000dead"
	patchHdr := func(kv ...string) http.Header {
		return e.tusHdr("acme", append([]string{"Upload-Offset", "0", "Content-Type", "application/offset+octet-stream"}, kv...)...)
	}
	// twice adds a second value of key to h.
	twice := func(h http.Header, key, v string) http.Header {
		h.Add(key, v)
		return h
	}
	sha1Of := func(s string) string { return "sha1 " + b64(strings.Repeat(s, 20)) }
	tests := []struct {
		name   string
		method string
		path   string
		h      http.Header
		body   []byte
		status int
		code   string
		header string // a header the response must carry
	}{
		{"no Authorization", "POST", uploadsPath, hdr("Tus-Resumable", "1.0.0", "Upload-Length", "1", "Upload-Metadata", videoMD), nil, 401, "unauthorized", "WWW-Authenticate"},
		{"unknown key", "HEAD", c.Location, hdr("Tus-Resumable", "1.0.0", "Authorization", "Bearer rk_live_nope"), nil, 401, "", "WWW-Authenticate"},
		{"not a bearer key", "POST", uploadsPath, hdr("Tus-Resumable", "1.0.0", "Authorization", "Basic "+e.keys["acme"], "Upload-Length", "1", "Upload-Metadata", videoMD), nil, 401, "unauthorized", "WWW-Authenticate"},
		{"unknown session HEAD", "HEAD", unknown, e.tusHdr("acme"), nil, 404, "", ""},
		{"unknown session PATCH", "PATCH", unknown, patchHdr(), []byte("x"), 404, "not_found", ""},
		{"unknown asset", "GET", "/api/v1/assets/019deafa-0000-7000-8000-00000000dead", hdr("Authorization", "Bearer "+e.keys["acme"]), nil, 404, "not_found", ""},
		{"missing Tus-Resumable", "POST", uploadsPath, hdr("Authorization", "Bearer "+e.keys["acme"], "Upload-Length", "1", "Upload-Metadata", videoMD), nil, 412, "unsupported_tus_version", "Tus-Version"},
		{"unsupported Tus-Resumable", "HEAD", c.Location, e.tusHdr("acme", "Tus-Resumable", "0.2.2"), nil, 412, "", "Tus-Version"},
		{"PATCH Content-Type", "PATCH", c.Location, e.tusHdr("acme", "Upload-Offset", "0", "Content-Type", "application/octet-stream"), []byte("x"), 415, "unsupported_content_type", ""},
		{"PATCH offset mismatch", "PATCH", c.Location, patchHdr("Upload-Offset", "5"), []byte("x"), 409, "offset_mismatch", ""},
		{"PATCH offset missing", "PATCH", c.Location, e.tusHdr("acme", "Content-Type", "application/offset+octet-stream"), []byte("x"), 400, "invalid_offset", ""},
		{"Upload-Length over 50 GiB", "POST", uploadsPath, e.tusHdr("acme", "Upload-Length", "53687091201", "Upload-Metadata", videoMD), nil, 413, "upload_too_large", ""},
		{"Upload-Length of 50 GiB is fine", "POST", uploadsPath, e.tusHdr("acme", "Upload-Length", "53687091200", "Upload-Metadata", videoMD), nil, 201, "", "Location"},
		{"bytes past Upload-Length", "PATCH", c.Location, patchHdr(), make([]byte, 1001), 413, "past_upload_length", ""},
		{"Upload-Length negative", "POST", uploadsPath, e.tusHdr("acme", "Upload-Length", "-1", "Upload-Metadata", videoMD), nil, 400, "invalid_length", ""},
		{"Upload-Length not a number", "POST", uploadsPath, e.tusHdr("acme", "Upload-Length", "ten", "Upload-Metadata", videoMD), nil, 400, "invalid_length", ""},
		{"both lengths", "POST", uploadsPath, e.tusHdr("acme", "Upload-Length", "10", "Upload-Defer-Length", "1", "Upload-Metadata", videoMD), nil, 400, "invalid_length", ""},
		{"neither length", "POST", uploadsPath, e.tusHdr("acme", "Upload-Metadata", videoMD), nil, 400, "invalid_length", ""},
		{"Upload-Defer-Length not 1", "POST", uploadsPath, e.tusHdr("acme", "Upload-Defer-Length", "2", "Upload-Metadata", videoMD), nil, 400, "invalid_length", ""},
		{"metadata bad base64", "POST", uploadsPath, e.tusHdr("acme", "Upload-Length", "1", "Upload-Metadata", "type v!deo"), nil, 400, "invalid_metadata", ""},
		{"metadata duplicate key", "POST", uploadsPath, e.tusHdr("acme", "Upload-Length", "1", "Upload-Metadata", videoMD+","+md("type", "audio")), nil, 400, "invalid_metadata", ""},
		{"metadata type missing", "POST", uploadsPath, e.tusHdr("acme", "Upload-Length", "1", "Upload-Metadata", md("filename", "a.mp4")), nil, 400, "invalid_metadata", ""},
		{"metadata type not video/audio", "POST", uploadsPath, e.tusHdr("acme", "Upload-Length", "1", "Upload-Metadata", md("type", "image")), nil, 400, "invalid_metadata", ""},
		{"metadata content_type with CR/LF", "POST", uploadsPath, e.tusHdr("acme", "Upload-Length", "1", "Upload-Metadata", md("type", "video", "content_type", "video/mp4\r\nX-Injected: 1")), nil, 400, "invalid_metadata", ""},
		{"metadata content_type not a media type", "POST", uploadsPath, e.tusHdr("acme", "Upload-Length", "1", "Upload-Metadata", md("type", "video", "content_type", "mp4")), nil, 400, "invalid_metadata", ""},
		{"metadata type as MIME is fine", "POST", uploadsPath, e.tusHdr("acme", "Upload-Length", "1", "Upload-Metadata", md("type", "video/mp4")), nil, 201, "", "Location"},
		{"checksum unknown algorithm", "PATCH", c.Location, patchHdr("Upload-Checksum", "crc32 AAAAAA=="), []byte("x"), 400, "invalid_checksum", ""},
		{"checksum malformed", "PATCH", c.Location, patchHdr("Upload-Checksum", "sha256"), []byte("x"), 400, "invalid_checksum", ""},
		{"checksum wrong digest size", "PATCH", c.Location, patchHdr("Upload-Checksum", "sha1 AAAA"), []byte("x"), 400, "invalid_checksum", ""},
		{"checksum mismatch", "PATCH", c.Location, patchHdr("Upload-Checksum", "sha1 "+b64(strings.Repeat("x", 20))), []byte("abc"), 460, "checksum_mismatch", ""},
		{"Upload-Offset twice", "PATCH", c.Location, twice(patchHdr(), "Upload-Offset", "5"), []byte("x"), 400, "invalid_offset", ""},
		{"Upload-Length twice on PATCH", "PATCH", c.Location, twice(patchHdr("Upload-Length", "1000"), "Upload-Length", "2000"), []byte("x"), 400, "invalid_length", ""},
		{"Upload-Checksum twice", "PATCH", c.Location, twice(patchHdr("Upload-Checksum", sha1Of("a")), "Upload-Checksum", sha1Of("b")), []byte("x"), 400, "invalid_checksum", ""},
		{"Upload-Length twice on POST", "POST", uploadsPath, twice(e.tusHdr("acme", "Upload-Length", "10", "Upload-Metadata", videoMD), "Upload-Length", "20"), nil, 400, "invalid_length", ""},
		{"Upload-Checksum twice on POST with data", "POST", uploadsPath, twice(e.tusHdr("acme", "Upload-Length", "1", "Upload-Metadata", videoMD,
			"Content-Type", "application/offset+octet-stream", "Upload-Checksum", sha1Of("a")), "Upload-Checksum", sha1Of("b")), []byte("x"), 400, "invalid_checksum", ""},
		{"method not allowed", "PUT", c.Location, e.tusHdr("acme"), nil, 405, "method_not_allowed", "Allow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.method, tt.path, tt.h, tt.body)
			if r.status != tt.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tt.status)
			}
			if want := fmt.Sprintf("%d %s", tt.status, statusText(tt.status)); r.text != want {
				t.Errorf("status line %q, want %q", r.text, want)
			}
			if r.h.Get("Tus-Resumable") != "1.0.0" && strings.HasPrefix(tt.path, uploadsPath) {
				t.Errorf("response lacks Tus-Resumable: 1.0.0")
			}
			if tt.header != "" && r.h.Get(tt.header) == "" {
				t.Errorf("response lacks %s", tt.header)
			}
			if tt.status >= 400 && tt.method != "HEAD" {
				if ct := r.h.Get("Content-Type"); ct != "application/json" {
					t.Errorf("error Content-Type = %q, want application/json", ct)
				}
				if tt.code != "" && r.errorCode() != tt.code {
					t.Errorf("error code %q (%s), want %q", r.errorCode(), r.body, tt.code)
				}
			}
		})
	}
	// None of the refused PATCHes moved the offset.
	if h := e.head("acme", c.Location); h.h.Get("Upload-Offset") != "0" {
		t.Errorf("offset after refused PATCHes = %q, want 0", h.h.Get("Upload-Offset"))
	}
}

// statusText is the reason phrase a status must go out with: TUS's for
// 460, else the standard one.
func statusText(code int) string {
	if code == StatusChecksumMismatch {
		return "Checksum Mismatch"
	}
	return http.StatusText(code)
}

// TestLockedRetryAfter: a 423 tells the client when to retry.
func TestLockedRetryAfter(t *testing.T) {
	e, fs := newFlakyEnv(t, nil)
	c := e.create("acme", 10)
	fs.locked.Store(true)
	r := e.patch("acme", c.Location, 0, []byte("0123456789"))
	if r.status != http.StatusLocked || r.h.Get("Retry-After") != "1" {
		t.Fatalf("PATCH of a locked upload: %d Retry-After %q %s, want 423 with Retry-After 1", r.status, r.h.Get("Retry-After"), r.body)
	}
	if got := testutil.ToFloat64(e.srv.metrics.errors.WithLabelValues("423", "upload_locked")); got != 1 {
		t.Errorf("roughy_http_errors_total{status=\"423\",code=\"upload_locked\"}: got %v, want 1", got)
	}
}

// TestRepeatedHeaderSameValue: a TUS header repeated with the same value
// is unambiguous and accepted (different values are a 400: TestBadInput).
func TestRepeatedHeaderSameValue(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := e.create("acme", 3)
	h := e.tusHdr("acme", "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream", "Upload-Length", "3")
	h.Add("Upload-Offset", "0")
	h.Add("Upload-Length", "3")
	if r := e.do("PATCH", c.Location, h, []byte("abc")); r.status != http.StatusNoContent || r.h.Get("Upload-Offset") != "3" {
		t.Fatalf("PATCH with Upload-Offset and Upload-Length twice, same values: %d %s, want 204 offset 3", r.status, r.body)
	}
	e.wantReady("acme", c.SessionID, []byte("abc"))
}

// TestBodyTooLarge sends a Content-Length over 64 MiB without sending
// the body: the 413 must come back at once and mention chunkSize.
func TestBodyTooLarge(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := e.create("acme", 100<<20)
	for _, expect := range []bool{false, true} {
		rc := e.raw()
		h := e.tusHdr("acme", "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream", "Content-Length", strconv.Itoa(64<<20+1))
		if expect {
			h.Set("Expect", "100-continue")
		}
		// fasthttp pre-reads up to 8 KiB of a body before the handler runs:
		// send a bit more, as a real client would, but far from all of it.
		var body []byte
		if !expect {
			body = make([]byte, 16<<10)
		}
		rc.send("PATCH", c.Location[len(e.url):], h, body)
		r := rc.read("PATCH")
		if r.status != http.StatusRequestEntityTooLarge || !strings.Contains(string(r.body), "chunkSize") {
			t.Errorf("Expect %v: %d %s, want 413 mentioning chunkSize", expect, r.status, r.body)
		}
		if r.h.Get("Tus-Resumable") != "1.0.0" {
			t.Errorf("Expect %v: 413 without Tus-Resumable", expect)
		}
	}
	// POST with data over the cap too.
	rc := e.raw()
	rc.send("POST", uploadsPath, e.tusHdr("acme", "Upload-Length", strconv.Itoa(100<<20), "Upload-Metadata", md("type", "video"),
		"Content-Type", "application/offset+octet-stream", "Content-Length", strconv.Itoa(64<<20+1)), make([]byte, 16<<10))
	if r := rc.read("POST"); r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("POST with 64 MiB + 1 of data: %d, want 413", r.status)
	}
}

// TestExpectContinueRejections: a request that is sure to fail is refused
// with its final status before the client sends its body (no 100
// Continue): the handler's checks of headers, key, owner, offset and
// length run first.
func TestExpectContinueRejections(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := e.create("acme", 100)
	deferred := e.create("acme", -1)
	if r := e.patch("acme", deferred.Location, 0, make([]byte, 10)); r.status != http.StatusNoContent {
		t.Fatalf("PATCH of the deferred upload: %d %s", r.status, r.body)
	}
	unknown := uploadsPath + "/019deafa-0000-7000-8000-00000000dead"
	patchHdr := func(account string, kv ...string) http.Header {
		return e.tusHdr(account, append([]string{"Upload-Offset", "0", "Content-Type", "application/offset+octet-stream",
			"Content-Length", "100", "Expect", "100-continue"}, kv...)...)
	}
	postHdr := func(account string, kv ...string) http.Header {
		return e.tusHdr(account, append([]string{"Upload-Length", "100", "Upload-Metadata", md("type", "video"),
			"Content-Type", "application/offset+octet-stream", "Content-Length", "100", "Expect", "100-continue"}, kv...)...)
	}
	tests := []struct {
		name   string
		method string
		path   string
		h      http.Header
		status int
		code   string
	}{
		{"wrong Content-Type", "PATCH", c.Location, patchHdr("acme", "Content-Type", "text/plain"), 415, "unsupported_content_type"},
		{"no key", "PATCH", c.Location, patchHdr(""), 401, "unauthorized"},
		{"unknown key", "PATCH", c.Location, patchHdr("", "Authorization", "Bearer rk_live_nope"), 401, "unauthorized"},
		{"another account's upload", "PATCH", c.Location, patchHdr("globex"), 404, "not_found"},
		{"unknown upload", "PATCH", unknown, patchHdr("acme"), 404, "not_found"},
		{"offset mismatch", "PATCH", c.Location, patchHdr("acme", "Upload-Offset", "7"), 409, "offset_mismatch"},
		{"past Upload-Length", "PATCH", c.Location, patchHdr("acme", "Content-Length", "101"), 413, "past_upload_length"},
		{"Upload-Length changed", "PATCH", c.Location, patchHdr("acme", "Upload-Length", "200"), 400, "invalid_length"},
		{"deferred Upload-Length below offset", "PATCH", deferred.Location, patchHdr("acme", "Upload-Offset", "10", "Upload-Length", "5"), 400, "invalid_upload_length"},
		{"deferred Upload-Length short of the body", "PATCH", deferred.Location, patchHdr("acme", "Upload-Offset", "10", "Upload-Length", "50"), 413, "past_upload_length"},
		{"POST no key", "POST", uploadsPath, postHdr(""), 401, "unauthorized"},
		{"POST metadata type missing", "POST", uploadsPath, postHdr("acme", "Upload-Metadata", md("filename", "a.mp4")), 400, "invalid_metadata"},
		{"POST data past Upload-Length", "POST", uploadsPath, postHdr("acme", "Upload-Length", "50"), 413, "past_upload_length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := e.raw()
			path := strings.TrimPrefix(tt.path, e.url)
			rc.send(tt.method, path, tt.h, nil) // headers only: the body waits for 100 Continue
			r := rc.read(tt.method)
			if r.status != tt.status || r.errorCode() != tt.code {
				t.Fatalf("%d %s, want %d %s before any 100 Continue", r.status, r.body, tt.status, tt.code)
			}
			if r.h.Get("Tus-Resumable") != "1.0.0" {
				t.Errorf("refusal without Tus-Resumable")
			}
		})
	}
	// A good one gets 100 Continue, then its answer.
	rc := e.raw()
	rc.send("PATCH", c.Location[len(e.url):], patchHdr("acme"), nil)
	line, err := rc.br.ReadString('\n')
	if err != nil || !strings.Contains(line, "100") {
		t.Fatalf("want 100 Continue, got %q, %v", line, err)
	}
	if _, err := rc.br.ReadString('\n'); err != nil {
		t.Fatalf("blank line after 100 Continue: %v", err)
	}
	rc.write(make([]byte, 100))
	if r := rc.read("PATCH"); r.status != http.StatusNoContent || r.h.Get("Upload-Offset") != "100" {
		t.Errorf("PATCH after 100 Continue: %d %q", r.status, r.h.Get("Upload-Offset"))
	}
}

// TestDeferredLengthBelowOffset: a deferred Upload-Length below the bytes
// already stored is a malformed length (400), not a body that is too long.
func TestDeferredLengthBelowOffset(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := e.create("acme", -1)
	if r := e.patch("acme", c.Location, 0, make([]byte, 10)); r.status != http.StatusNoContent {
		t.Fatalf("first PATCH: %d %s", r.status, r.body)
	}
	if r := e.patch("acme", c.Location, 10, nil, "Upload-Length", "5"); r.status != http.StatusBadRequest || r.errorCode() != "invalid_upload_length" {
		t.Errorf("Upload-Length 5 at offset 10: %d %s, want 400 invalid_upload_length", r.status, r.body)
	}
	if r := e.patch("acme", c.Location, 10, []byte("xy"), "Upload-Length", "11"); r.status != http.StatusRequestEntityTooLarge || r.errorCode() != "past_upload_length" {
		t.Errorf("Upload-Length 11 at offset 10 with 2 bytes: %d %s, want 413 past_upload_length", r.status, r.body)
	}
	if h := e.head("acme", c.Location); h.h.Get("Upload-Defer-Length") != "1" || h.h.Get("Upload-Offset") != "10" {
		t.Errorf("HEAD after the refusals: offset %q defer %q, want 10 and still deferred", h.h.Get("Upload-Offset"), h.h.Get("Upload-Defer-Length"))
	}
}

// TestErrorKeepsConnectionUsable: a refused PATCH's body is drained, not
// parsed as the next request on the keep-alive connection.
func TestErrorKeepsConnectionUsable(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := e.create("acme", 1<<20)
	rc := e.raw()
	body := []byte(strings.Repeat("GET / HTTP/1.1\r\n\r\n", 3000)) // would be requests if parsed
	rc.send("PATCH", c.Location[len(e.url):], e.tusHdr("acme", "Upload-Offset", "7", "Content-Type", "application/offset+octet-stream",
		"Content-Length", strconv.Itoa(len(body))), body)
	if r := rc.read("PATCH"); r.status != http.StatusConflict {
		t.Fatalf("PATCH at a wrong offset: %d, want 409", r.status)
	}
	rc.send("HEAD", c.Location[len(e.url):], e.tusHdr("acme"), nil)
	if r := rc.read("HEAD"); r.status != http.StatusOK || r.h.Get("Upload-Offset") != "0" {
		t.Errorf("HEAD on the same connection: %d %q, want 200 offset 0", r.status, r.h.Get("Upload-Offset"))
	}
}

func TestAccountIsolation(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := e.create("acme", 10)
	e.patch("acme", c.Location, 0, []byte("01234"))
	if r := e.head("globex", c.Location); r.status != http.StatusNotFound {
		t.Errorf("HEAD by another account: %d, want 404", r.status)
	}
	if r := e.patch("globex", c.Location, 5, []byte("56789")); r.status != http.StatusNotFound {
		t.Errorf("PATCH by another account: %d, want 404", r.status)
	}
	// DELETE is idempotent: an unknown id is a 204, so another account's too.
	if r := e.do("DELETE", c.Location, e.tusHdr("globex"), nil); r.status != http.StatusNoContent {
		t.Errorf("DELETE by another account: %d, want 204 (as for an unknown id)", r.status)
	}
	if r, _ := e.getAsset("globex", c.SessionID); r.status != http.StatusNotFound {
		t.Errorf("GET asset by another account: %d, want 404", r.status)
	}
	// Nothing of it touched acme's upload.
	if h := e.head("acme", c.Location); h.status != http.StatusOK || h.h.Get("Upload-Offset") != "5" {
		t.Errorf("owner's HEAD: %d offset %q, want 200 5", h.status, h.h.Get("Upload-Offset"))
	}
	e.patch("acme", c.Location, 5, []byte("56789"))
	if r, a := e.getAsset("acme", c.SessionID); r.status != http.StatusOK || a.State != "ready" {
		t.Errorf("owner's GET asset: %d %s", r.status, r.body)
	}
	e.wantReady("acme", c.SessionID, []byte("0123456789"))
	if r, _ := e.getAsset("globex", c.SessionID); r.status != http.StatusNotFound {
		t.Errorf("GET ready asset by another account: %d, want 404", r.status)
	}
}

// TestSimultaneousPatches races two full PATCHes at offset 0, several
// times: at most one is acknowledged (the newer may take the older over,
// which then answers 409, and the newer may find the offset moved: 409
// too), and what is stored is a prefix of one body, never a mix.
func TestSimultaneousPatches(t *testing.T) {
	e := newEnv(t, nil, nil)
	size := 512 << 10
	for round := range 4 {
		c := e.create("acme", int64(size))
		bodies := [][]byte{[]byte(strings.Repeat("A", size)), []byte(strings.Repeat("B", size))}
		results := make([]resp, 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 2 {
			wg.Go(func() {
				<-start
				results[i] = e.patch("acme", c.Location, 0, bodies[i])
			})
		}
		close(start)
		wg.Wait()
		ok := 0
		for i, r := range results {
			switch r.status {
			case http.StatusNoContent:
				ok++
				if got := string(e.stored(c.SessionID)); got != string(bodies[i]) {
					t.Errorf("round %d: stored bytes are not the acknowledged body", round)
				}
				e.wantReady("acme", c.SessionID, bodies[i])
			case http.StatusLocked, http.StatusConflict:
			default:
				t.Errorf("round %d: PATCH %d: %d %s", round, i, r.status, r.body)
			}
		}
		if ok > 1 {
			t.Errorf("round %d: %d PATCHes acknowledged (%d, %d), want at most 1", round, ok, results[0].status, results[1].status)
		}
		off, err := strconv.Atoi(e.head("acme", c.Location).h.Get("Upload-Offset"))
		if err != nil {
			t.Fatalf("round %d: HEAD: %v", round, err)
		}
		got := string(e.stored(c.SessionID)[:off])
		if got != string(bodies[0][:off]) && got != string(bodies[1][:off]) {
			t.Errorf("round %d: the %d stored bytes mix both bodies", round, off)
		}
	}
}

// TestTruncatedBody: a client that vanishes mid-PATCH keeps what was made
// durable; HEAD says where to resume, and the resumed upload is intact.
func TestTruncatedBody(t *testing.T) {
	e := newEnv(t, nil, nil)
	data := randomBytes(t, 3<<20)
	c := e.create("acme", int64(len(data)))
	rc := e.raw()
	sent := 1<<20 + 12345
	rc.send("PATCH", c.Location[len(e.url):], e.tusHdr("acme", "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream",
		"Content-Length", strconv.Itoa(len(data))), data[:sent])
	waitFor(t, "the PATCH to stream", func() bool { return e.srv.metrics.activeUploads.Load() == 1 })
	rc.c.Close()
	var off int64
	waitFor(t, "the lease to be released", func() bool {
		h := e.head("acme", c.Location)
		off, _ = strconv.ParseInt(h.h.Get("Upload-Offset"), 10, 64)
		return e.srv.metrics.activeUploads.Load() == 0 && h.status == http.StatusOK
	})
	if off > int64(sent) {
		t.Fatalf("offset %d after a disconnect, above the %d bytes sent", off, sent)
	}
	if got := e.stored(c.SessionID); int64(len(got)) < off || string(got[:off]) != string(data[:off]) {
		t.Fatalf("stored bytes do not match the first %d sent", off)
	}
	r := e.patch("acme", c.Location, off, data[off:])
	if r.status != http.StatusNoContent {
		t.Fatalf("resume at %d: %d %s", off, r.status, r.body)
	}
	if _, a := e.getAsset("acme", c.SessionID); a.State != "ready" || a.SHA256 != sha256Hex(data) {
		t.Errorf("after resume: %+v, want ready with sha256 %s", a, sha256Hex(data))
	}
	e.wantReady("acme", c.SessionID, data)
	t.Logf("resumed at %d of %d sent bytes", off, sent)
}

func TestExpiry(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.UploadExpiry = 300 * time.Millisecond }, nil)
	c := e.create("acme", 10)
	e.patch("acme", c.Location, 0, []byte("01234"))
	done := e.create("acme", 0) // complete uploads never expire
	time.Sleep(400 * time.Millisecond)
	if h := e.head("acme", c.Location); h.status != http.StatusGone {
		t.Errorf("HEAD of expired upload: %d, want 410", h.status)
	}
	if r := e.patch("acme", c.Location, 5, []byte("56789")); r.status != http.StatusGone || r.errorCode() != "upload_expired" {
		t.Errorf("PATCH of expired upload: %d %s, want 410", r.status, r.body)
	}
	if n := e.srv.svc.Sweep(t.Context(), time.Now()); n != 1 {
		t.Errorf("janitor freed %d uploads, want 1", n)
	}
	if h := e.head("acme", c.Location); h.status != http.StatusNotFound {
		t.Errorf("HEAD after the janitor: %d, want 404", h.status)
	}
	if _, err := e.srv.pipe.Sink().Open(t.Context(), storageKey(c.SessionID)); err == nil {
		t.Errorf("expired upload's bytes are still stored")
	}
	if h := e.head("acme", done.Location); h.status != http.StatusOK {
		t.Errorf("HEAD of a completed upload after expiry time: %d, want 200", h.status)
	}
	e.wantReady("acme", done.SessionID, []byte{})
	// RunJanitor stops with its context.
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan struct{})
	go func() { e.srv.RunJanitor(ctx, 10*time.Millisecond); close(stopped) }()
	cancel()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("RunJanitor did not return after its context ended")
	}
}

// newFlakyEnv starts a server over a flakyStore.
func newFlakyEnv(t *testing.T, cfgMod func(*Config)) (*env, *flakyStore) {
	var fs *flakyStore
	e := newEnv(t, cfgMod, func(s sessionstore.Store) sessionstore.Store {
		fs = &flakyStore{Store: s.(*bolt.Store)}
		return fs
	})
	return e, fs
}

// flakyStore is the embedded store with switchable outages.
type flakyStore struct {
	*bolt.Store
	down atomic.Bool
	// leaseLost makes renewals and commits fail as if another node had
	// taken the upload over.
	leaseLost atomic.Bool
	// locked makes every lease acquisition find the upload locked.
	locked atomic.Bool
	// deleteFirst deletes that upload just before the next lease on it is
	// taken: a DELETE that wins the race between a PATCH's read of the
	// upload and its lease.
	deleteFirst atomic.Pointer[string]
}

func (f *flakyStore) AcquireLease(ctx context.Context, id string, ttl time.Duration, parts int32) (sessionstore.Lease, error) {
	if err := f.beforeLease(ctx, id); err != nil {
		return sessionstore.Lease{}, err
	}
	return f.Store.AcquireLease(ctx, id, ttl, parts)
}

func (f *flakyStore) AcquireLeaseFenced(ctx context.Context, id string, ttl time.Duration, parts int32, fence int64) (sessionstore.Lease, error) {
	if err := f.beforeLease(ctx, id); err != nil {
		return sessionstore.Lease{}, err
	}
	return f.Store.AcquireLeaseFenced(ctx, id, ttl, parts, fence)
}

// beforeLease is what every lease acquisition meets first.
func (f *flakyStore) beforeLease(ctx context.Context, id string) error {
	if f.locked.Load() {
		return fmt.Errorf("flaky: %w", sessionstore.ErrLocked)
	}
	if p := f.deleteFirst.Load(); p != nil && *p == id && f.deleteFirst.CompareAndSwap(p, nil) {
		if _, err := f.DeleteUpload(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

func (f *flakyStore) RenewLease(ctx context.Context, l sessionstore.Lease, ttl time.Duration) (sessionstore.Lease, error) {
	if f.leaseLost.Load() {
		return sessionstore.Lease{}, fmt.Errorf("flaky: %w", sessionstore.ErrLeaseLost)
	}
	return f.Store.RenewLease(ctx, l, ttl)
}

func (f *flakyStore) Commit(ctx context.Context, l sessionstore.Lease, c sessionstore.Commit) (sessionstore.Session, error) {
	if f.leaseLost.Load() {
		return sessionstore.Session{}, fmt.Errorf("flaky: %w", sessionstore.ErrLeaseLost)
	}
	return f.Store.Commit(ctx, l, c)
}

var errOutage = fmt.Errorf("flaky: %w: connection refused", sessionstore.ErrUnavailable)

func (f *flakyStore) KeyByHash(ctx context.Context, h string) (sessionstore.Key, error) {
	if f.down.Load() {
		return sessionstore.Key{}, errOutage
	}
	return f.Store.KeyByHash(ctx, h)
}

func (f *flakyStore) Session(ctx context.Context, id string) (sessionstore.Session, error) {
	if f.down.Load() {
		return sessionstore.Session{}, errOutage
	}
	return f.Store.Session(ctx, id)
}

func (f *flakyStore) OffsetSession(ctx context.Context, id string) (sessionstore.Session, error) {
	if f.down.Load() {
		return sessionstore.Session{}, errOutage
	}
	return f.Store.OffsetSession(ctx, id)
}

func (f *flakyStore) Asset(ctx context.Context, id string) (sessionstore.Asset, error) {
	if f.down.Load() {
		return sessionstore.Asset{}, errOutage
	}
	return f.Store.Asset(ctx, id)
}

func (f *flakyStore) Ping(ctx context.Context) error {
	if f.down.Load() {
		return errOutage
	}
	return f.Store.Ping(ctx)
}

// TestStoreOutage: a session store outage is a 503 with Retry-After, never
// a 401 or 404 that would make tus-js-client forget the upload.
func TestStoreOutage(t *testing.T) {
	e, fs := newFlakyEnv(t, nil)
	c := e.create("acme", 10) // the key is now cached
	fs.down.Store(true)
	check := func(name string, r resp) {
		t.Helper()
		if r.status != http.StatusServiceUnavailable || r.h.Get("Retry-After") == "" {
			t.Errorf("%s during an outage: %d Retry-After %q, want 503 with Retry-After", name, r.status, r.h.Get("Retry-After"))
		}
	}
	check("HEAD", e.head("acme", c.Location))
	check("PATCH", e.patch("acme", c.Location, 0, []byte("0123456789")))
	check("GET asset", e.do("GET", "/api/v1/assets/"+c.SessionID, hdr("Authorization", "Bearer "+e.keys["acme"]), nil))
	check("HEAD with an uncached key", e.head("globex", c.Location))
	// Refused before 100 Continue: the client need not send the body.
	rc := e.raw()
	rc.send("PATCH", c.Location[len(e.url):], e.tusHdr("acme", "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream",
		"Content-Length", "10", "Expect", "100-continue"), nil)
	check("PATCH with Expect: 100-continue", rc.read("PATCH"))
	check("readyz", e.do("GET", "/readyz", nil, nil))
	fs.down.Store(false)
	if h := e.head("acme", c.Location); h.status != http.StatusOK || h.h.Get("Upload-Offset") != "0" {
		t.Errorf("HEAD after the outage: %d %q, want 200 offset 0", h.status, h.h.Get("Upload-Offset"))
	}
	if r := e.do("GET", "/readyz", nil, nil); r.status != http.StatusOK {
		t.Errorf("readyz after the outage: %d", r.status)
	}
	if !errors.Is(errOutage, sessionstore.ErrUnavailable) {
		t.Fatal("test fake does not wrap ErrUnavailable")
	}
}

// TestLeaseLostStopsWrite: a PATCH whose lease is taken over stops, commits
// nothing more and answers 423.
func TestLeaseLostStopsWrite(t *testing.T) {
	e, fs := newFlakyEnv(t, func(c *Config) { c.LeaseTTL = 300 * time.Millisecond })
	size := 256 << 10
	c := e.create("acme", int64(size))
	rc := e.startPatch(c, size, make([]byte, 64<<10))
	fs.leaseLost.Store(true)
	time.Sleep(400 * time.Millisecond) // at least one failed renewal
	rc.write(make([]byte, size-64<<10))
	if r := rc.read("PATCH"); r.status != http.StatusLocked {
		t.Errorf("PATCH that lost its lease: %d %s, want 423", r.status, r.body)
	}
	if got := testutil.ToFloat64(e.srv.metrics.lost); got < 1 {
		t.Errorf("roughy_leases_lost_total: got %v, want at least 1", got)
	}
	if got := testutil.ToFloat64(e.srv.metrics.failed.WithLabelValues("lease_lost")); got != 1 {
		t.Errorf("roughy_uploads_failed_total{reason=\"lease_lost\"}: got %v, want 1", got)
	}
	fs.leaseLost.Store(false)
	if h := e.head("acme", c.Location); h.h.Get("Upload-Offset") != "0" {
		t.Errorf("offset after a lost lease = %q, want 0 (nothing committed)", h.h.Get("Upload-Offset"))
	}
}
