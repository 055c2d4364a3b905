package e2e

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

var codeRE = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// wantError checks an error reply: its status, SPEC's JSON body shape
// {"error":{"code":"snake_case","message":"…"}}, and Tus-Resumable.
func wantError(t *testing.T, what string, rep reply, status int) {
	t.Helper()
	if rep.Status != status {
		t.Fatalf("%s: got %d %s, want %d", what, rep.Status, rep.Body, status)
	}
	if ct := rep.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type got %q, want application/json", what, ct)
	}
	var body struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rep.Body, &body); err != nil || body.Error == nil {
		t.Fatalf("%s: body %q is not {\"error\":{…}} (%v)", what, rep.Body, err)
	}
	if !codeRE.MatchString(body.Error.Code) || body.Error.Message == "" {
		t.Errorf("%s: error got code %q message %q, want snake_case code and a message", what, body.Error.Code, body.Error.Message)
	}
	if v := rep.Header.Get("Tus-Resumable"); v != "1.0.0" {
		t.Errorf("%s: Tus-Resumable got %q, want 1.0.0", what, v)
	}
}

// TestBadInput sends each row of SPEC's bad-input table once.
func TestBadInput(t *testing.T) {
	s := startServer(t)
	post := func(h map[string]string) reply {
		return do(t, req{Method: "POST", URL: s.Endpoint(), Key: acmeKey, Header: h})
	}
	withLen := func(meta string) map[string]string {
		return map[string]string{"Upload-Length": "10", "Upload-Metadata": meta}
	}
	meta := videoMeta("x.mp4")

	t.Run("401 no Authorization", func(t *testing.T) {
		rep := do(t, req{Method: "POST", URL: s.Endpoint(), Header: withLen(meta)})
		wantError(t, "POST without key", rep, 401)
		if !strings.HasPrefix(rep.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("WWW-Authenticate: got %q, want Bearer…", rep.Header.Get("WWW-Authenticate"))
		}
	})
	t.Run("401 unknown key", func(t *testing.T) {
		rep := do(t, req{Method: "POST", URL: s.Endpoint(), Key: "rk_live_nosuchkeynosuchkey0000000000", Header: withLen(meta)})
		wantError(t, "POST with unknown key", rep, 401)
		if !strings.HasPrefix(rep.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("WWW-Authenticate: got %q, want Bearer…", rep.Header.Get("WWW-Authenticate"))
		}
	})
	t.Run("404 other account", func(t *testing.T) {
		up := createUpload(t, s, acmeKey, 10)
		wantError(t, "PATCH by globex", patch(t, up.Location, globexKey, 0, []byte("0123456789")), 404)
		if off := headOffset(t, up.Location, acmeKey); off != 0 {
			t.Errorf("offset after foreign PATCH: got %d, want 0", off)
		}
	})
	t.Run("404 unknown upload", func(t *testing.T) {
		loc := s.Endpoint() + "/019deafa-0000-7000-8000-000000000000"
		wantError(t, "PATCH unknown", patch(t, loc, acmeKey, 0, []byte("x")), 404)
		rep := do(t, req{Method: "GET", URL: s.URL + "/api/v1/assets/019deafa-0000-7000-8000-000000000000", Key: acmeKey, NoTus: true})
		if rep.Status != 404 {
			t.Errorf("GET unknown asset: got %d, want 404", rep.Status)
		}
	})
	t.Run("412 missing Tus-Resumable", func(t *testing.T) {
		rep := do(t, req{Method: "POST", URL: s.Endpoint(), Key: acmeKey, NoTus: true, Header: withLen(meta)})
		wantError(t, "POST without Tus-Resumable", rep, 412)
		if !strings.Contains(rep.Header.Get("Tus-Version"), "1.0.0") {
			t.Errorf("Tus-Version: got %q, want 1.0.0", rep.Header.Get("Tus-Version"))
		}
	})
	t.Run("412 unsupported Tus-Resumable", func(t *testing.T) {
		h := withLen(meta)
		h["Tus-Resumable"] = "0.2.2"
		rep := post(h)
		wantError(t, "POST with Tus-Resumable 0.2.2", rep, 412)
		if !strings.Contains(rep.Header.Get("Tus-Version"), "1.0.0") {
			t.Errorf("Tus-Version: got %q, want 1.0.0", rep.Header.Get("Tus-Version"))
		}
	})
	t.Run("415 PATCH Content-Type", func(t *testing.T) {
		up := createUpload(t, s, acmeKey, 10)
		rep := do(t, req{Method: "PATCH", URL: up.Location, Key: acmeKey, Body: strings.NewReader("0123456789"),
			Header: map[string]string{"Upload-Offset": "0", "Content-Type": "application/octet-stream"}})
		wantError(t, "PATCH with wrong Content-Type", rep, 415)
	})
	t.Run("409 offset mismatch", func(t *testing.T) {
		up := createUpload(t, s, acmeKey, 10)
		wantError(t, "PATCH at 5 of 0", patch(t, up.Location, acmeKey, 5, []byte("56789")), 409)
		if rep := patch(t, up.Location, acmeKey, 0, []byte("01234")); rep.Status != 204 || rep.Header.Get("Upload-Offset") != "5" {
			t.Fatalf("PATCH at 0: got %d Upload-Offset %q, want 204 and 5", rep.Status, rep.Header.Get("Upload-Offset"))
		}
		wantError(t, "PATCH at 0 of 5", patch(t, up.Location, acmeKey, 0, []byte("01234")), 409)
	})
	t.Run("413 Upload-Length over 50 GiB", func(t *testing.T) {
		h := map[string]string{"Upload-Length": fmt.Sprint(int64(tusMaxSize) + 1), "Upload-Metadata": meta}
		wantError(t, "POST 50 GiB + 1", post(h), 413)
		h["Upload-Length"] = fmt.Sprint(int64(tusMaxSize))
		if rep := post(h); rep.Status != 201 {
			t.Errorf("POST exactly 50 GiB: got %d %s, want 201", rep.Status, rep.Body)
		}
	})
	t.Run("413 PATCH body over 64 MiB", func(t *testing.T) {
		up := createUpload(t, s, acmeKey, 100<<20)
		// Announce 64 MiB + 1 and send only 1 MiB: the server must refuse
		// from the header, without waiting for the body.
		p := openRawPatch(t, up.Location, acmeKey, 0, maxPatch+1, nil)
		_ = p.Write(make([]byte, 1<<20))
		rep, err := p.Response(20 * time.Second)
		if err != nil {
			t.Fatalf("PATCH 64 MiB + 1: no response: %v", err)
		}
		wantError(t, "PATCH 64 MiB + 1", rep, 413)
		if off := headOffset(t, up.Location, acmeKey); off != 0 {
			t.Errorf("offset after 413: got %d, want 0", off)
		}
	})
	t.Run("413 POST with data over 64 MiB", func(t *testing.T) {
		p := openRaw(t, "POST", s.Endpoint(), acmeKey, 0, maxPatch+1, map[string]string{
			"Upload-Length": fmt.Sprint(100 << 20), "Upload-Metadata": meta,
		})
		_ = p.Write(make([]byte, 1<<20))
		rep, err := p.Response(20 * time.Second)
		if err != nil {
			t.Fatalf("POST with 64 MiB + 1 of data: no response: %v", err)
		}
		wantError(t, "POST with 64 MiB + 1 of data", rep, 413)
	})
	t.Run("413 bytes past Upload-Length", func(t *testing.T) {
		up := createUpload(t, s, acmeKey, 10)
		wantError(t, "PATCH 11 bytes into 10", patch(t, up.Location, acmeKey, 0, []byte("0123456789A")), 413)
		if off := headOffset(t, up.Location, acmeKey); off != 0 {
			t.Errorf("offset after 413: got %d, want 0", off)
		}
	})
	t.Run("413 chunked body past Upload-Length completes nothing", func(t *testing.T) {
		up := createUpload(t, s, acmeKey, 10)
		// A reader of unknown length: net/http sends it chunked, so the
		// server cannot refuse it from Content-Length.
		rep := do(t, req{Method: "PATCH", URL: up.Location, Key: acmeKey, Body: io.MultiReader(strings.NewReader("0123456789AB")),
			Header: map[string]string{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}})
		wantError(t, "chunked PATCH of 12 bytes into 10", rep, 413)
		if st, a := getAsset(t, s, acmeKey, up.AssetID); st != 200 || a.State != "uploading" {
			t.Errorf("asset after the 413: got %d state %q, want 200 uploading", st, a.State)
		}
		// A request that succeeds completes it.
		if rep := patch(t, up.Location, acmeKey, 10, nil); rep.Status != 204 {
			t.Fatalf("empty PATCH at 10: got %d %s, want 204", rep.Status, rep.Body)
		}
		wantReady(t, s, acmeKey, up.AssetID, []byte("0123456789"))
	})
	for _, c := range []struct {
		name string
		h    map[string]string
	}{
		{"negative", map[string]string{"Upload-Length": "-1"}},
		{"not a number", map[string]string{"Upload-Length": "12abc"}},
		{"both", map[string]string{"Upload-Length": "10", "Upload-Defer-Length": "1"}},
		{"neither", map[string]string{}},
		{"defer not 1", map[string]string{"Upload-Defer-Length": "2"}},
	} {
		t.Run("400 Upload-Length "+c.name, func(t *testing.T) {
			c.h["Upload-Metadata"] = meta
			wantError(t, "POST "+c.name, post(c.h), 400)
		})
	}
	for _, c := range []struct{ name, meta string }{
		{"bad base64", "type !!notbase64!!"},
		{"duplicate key", "type " + b64("video") + ",type " + b64("audio")},
		{"type missing", "filename " + b64("x.mp4")},
		{"type invalid", "type " + b64("image")},
		{"no metadata", ""},
		{"content_type with CR/LF", "type " + b64("video") + ",content_type " + b64("video/mp4\r\nX-Injected: 1")},
		{"content_type not a media type", "type " + b64("video") + ",content_type " + b64("mp4")},
	} {
		t.Run("400 Upload-Metadata "+c.name, func(t *testing.T) {
			h := map[string]string{"Upload-Length": "10"}
			if c.meta != "" {
				h["Upload-Metadata"] = c.meta
			}
			wantError(t, "POST metadata "+c.name, post(h), 400)
		})
	}
	t.Run("460 checksum mismatch", func(t *testing.T) {
		data := []byte("0123456789abcdef")
		up := createUpload(t, s, acmeKey, int64(len(data)))
		wrong := sha1.Sum([]byte("something else"))
		rep := do(t, req{Method: "PATCH", URL: up.Location, Key: acmeKey, Body: bytes.NewReader(data), Header: map[string]string{
			"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
			"Upload-Checksum": "sha1 " + base64.StdEncoding.EncodeToString(wrong[:]),
		}})
		wantError(t, "PATCH with wrong sha1", rep, 460)
		if off := headOffset(t, up.Location, acmeKey); off != 0 {
			t.Fatalf("offset after 460: got %d, want 0", off)
		}
		right := sha256.Sum256(data)
		rep = do(t, req{Method: "PATCH", URL: up.Location, Key: acmeKey, Body: bytes.NewReader(data), Header: map[string]string{
			"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
			"Upload-Checksum": "sha256 " + base64.StdEncoding.EncodeToString(right[:]),
		}})
		if rep.Status != 204 || rep.Header.Get("Upload-Offset") != "16" {
			t.Fatalf("PATCH with right sha256: got %d %s Upload-Offset %q, want 204 and 16", rep.Status, rep.Body, rep.Header.Get("Upload-Offset"))
		}
		wantReady(t, s, acmeKey, up.AssetID, data)
	})
	t.Run("checksum algorithms accepted", func(t *testing.T) {
		data := []byte("checksummed chunk")
		sha1Sum, sha256Sum, md5Sum := sha1.Sum(data), sha256.Sum256(data), md5.Sum(data)
		for alg, sum := range map[string][]byte{"sha1": sha1Sum[:], "sha256": sha256Sum[:], "md5": md5Sum[:]} {
			up := createUpload(t, s, acmeKey, int64(len(data)))
			rep := do(t, req{Method: "PATCH", URL: up.Location, Key: acmeKey, Body: bytes.NewReader(data), Header: map[string]string{
				"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
				"Upload-Checksum": alg + " " + base64.StdEncoding.EncodeToString(sum),
			}})
			if rep.Status != 204 {
				t.Errorf("PATCH with a right %s: got %d %s, want 204", alg, rep.Status, rep.Body)
				continue
			}
			wantReady(t, s, acmeKey, up.AssetID, data)
		}
	})
	for _, c := range []struct{ name, value string }{
		{"unknown algorithm", "crc99 AAAAAA=="},
		{"no value", "sha256"},
		{"bad base64", "sha256 !!!!"},
	} {
		t.Run("400 Upload-Checksum "+c.name, func(t *testing.T) {
			up := createUpload(t, s, acmeKey, 4)
			rep := do(t, req{Method: "PATCH", URL: up.Location, Key: acmeKey, Body: strings.NewReader("abcd"), Header: map[string]string{
				"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream", "Upload-Checksum": c.value,
			}})
			wantError(t, "PATCH checksum "+c.name, rep, 400)
			if off := headOffset(t, up.Location, acmeKey); off != 0 {
				t.Errorf("offset after 400: got %d, want 0", off)
			}
		})
	}
	t.Run("400 TUS header twice with different values", func(t *testing.T) {
		up := createUpload(t, s, acmeKey, 10)
		// openRaw writes "Upload-Offset: 0" itself; the extra line in
		// another case is the same header a second time.
		for _, extra := range []map[string]string{{"upload-offset": "5"}, {"Upload-Length": "10", "upload-length": "20"}} {
			p := openRawPatch(t, up.Location, acmeKey, 0, 1, extra)
			_ = p.Write([]byte("x"))
			rep, err := p.Response(20 * time.Second)
			if err != nil {
				t.Fatalf("PATCH with %v: no response: %v", extra, err)
			}
			wantError(t, fmt.Sprintf("PATCH with %v", extra), rep, 400)
		}
		if off := headOffset(t, up.Location, acmeKey); off != 0 {
			t.Errorf("offset after 400: got %d, want 0", off)
		}
	})
	t.Run("refused before 100 Continue", func(t *testing.T) {
		up := createUpload(t, s, acmeKey, 10)
		expect := map[string]string{"Expect": "100-continue"}
		for _, c := range []struct {
			what   string
			key    string
			offset int64
			size   int64
			status int
		}{
			{"PATCH by another account", globexKey, 0, 10, 404},
			{"PATCH at a wrong offset", acmeKey, 5, 5, 409},
			{"PATCH past Upload-Length", acmeKey, 0, 11, 413},
		} {
			// Headers only: a client that waits for 100 Continue must get
			// the final status instead.
			rep, err := openRawPatch(t, up.Location, c.key, c.offset, c.size, expect).Response(20 * time.Second)
			if err != nil {
				t.Fatalf("%s: no response: %v", c.what, err)
			}
			wantError(t, c.what+" with Expect: 100-continue", rep, c.status)
		}
		if off := headOffset(t, up.Location, acmeKey); off != 0 {
			t.Errorf("offset after the refusals: got %d, want 0", off)
		}
	})
	t.Run("400 deferred Upload-Length below the offset", func(t *testing.T) {
		up := createUpload(t, s, acmeKey, -1)
		if rep := patch(t, up.Location, acmeKey, 0, []byte("0123456789")); rep.Status != 204 {
			t.Fatalf("first PATCH: got %d %s, want 204", rep.Status, rep.Body)
		}
		rep := do(t, req{Method: "PATCH", URL: up.Location, Key: acmeKey, Body: bytes.NewReader(nil), Header: map[string]string{
			"Upload-Offset": "10", "Upload-Length": "5", "Content-Type": "application/offset+octet-stream",
		}})
		wantError(t, "Upload-Length 5 at offset 10", rep, 400)
	})
	t.Run("concurrent PATCH takes over", func(t *testing.T) { testConcurrentPatchTakesOver(t, s) })
}

// testConcurrentPatchTakesOver holds one PATCH open mid-body and sends a
// second one: the newer wins (SPEC: the older request is told to stop and
// the newer proceeds, never both). The older answers 409
// upload_taken_over after committing what it read; the newer finds the
// offset moved (409 offset_mismatch) and HEAD + PATCH from there finish.
func testConcurrentPatchTakesOver(t *testing.T, s *server) {
	data := randomBytes(4 << 20)
	up := createUpload(t, s, acmeKey, int64(len(data)))
	first := openRawPatch(t, up.Location, acmeKey, 0, int64(len(data)), nil)
	if err := first.Write(data[:1<<20]); err != nil {
		t.Fatalf("first PATCH: %v", err)
	}
	time.Sleep(300 * time.Millisecond) // the first PATCH is now streaming
	second := patch(t, up.Location, acmeKey, 0, data)
	wantError(t, "second PATCH (the first committed 1 MiB while letting go)", second, 409)
	rep, err := first.Response(10 * time.Second)
	if err != nil || rep.Status != http.StatusConflict || !strings.Contains(string(rep.Body), "upload_taken_over") {
		t.Fatalf("first PATCH after the takeover: got %d %s %v, want 409 upload_taken_over", rep.Status, rep.Body, err)
	}
	off := headOffset(t, up.Location, acmeKey)
	if off != 1<<20 {
		t.Fatalf("offset after the takeover: got %d, want %d (what the first sent)", off, 1<<20)
	}
	if rep := patch(t, up.Location, acmeKey, off, data[off:]); rep.Status != 204 {
		t.Fatalf("PATCH from %d: got %d %s", off, rep.Status, rep.Body)
	}
	wantReady(t, s, acmeKey, up.AssetID, data)
}

// TestExpired starts a server whose uploads expire after 2 s: an upload
// left alone answers 410.
func TestExpired(t *testing.T) {
	s := startServer(t, withArgs("--upload-expiry", "2s"))
	up := createUpload(t, s, acmeKey, 10)
	if rep := patch(t, up.Location, acmeKey, 0, []byte("01234")); rep.Status != 204 {
		t.Fatalf("PATCH before expiry: got %d %s, want 204", rep.Status, rep.Body)
	}
	time.Sleep(4500 * time.Millisecond)
	wantError(t, "PATCH after expiry", patch(t, up.Location, acmeKey, 5, []byte("56789")), 410)
}

// TestOptionsAndCORS checks TUS discovery without auth and CORS headers.
func TestOptionsAndCORS(t *testing.T) {
	s := startServer(t)
	rep := do(t, req{Method: "OPTIONS", URL: s.Endpoint(), NoTus: true})
	if rep.Status != 204 {
		t.Fatalf("OPTIONS: got %d, want 204", rep.Status)
	}
	for k, want := range map[string]string{"Tus-Resumable": "1.0.0", "Tus-Version": "1.0.0", "Tus-Max-Size": "53687091200"} {
		if got := rep.Header.Get(k); got != want {
			t.Errorf("OPTIONS %s: got %q, want %q", k, got, want)
		}
	}
	ext := rep.Header.Get("Tus-Extension")
	for _, e := range []string{"creation", "creation-with-upload", "creation-defer-length", "termination", "checksum", "expiration", "concatenation"} {
		if !containsToken(ext, e) {
			t.Errorf("Tus-Extension %q lacks %s", ext, e)
		}
	}
	alg := rep.Header.Get("Tus-Checksum-Algorithm")
	for _, a := range []string{"sha256", "sha1", "md5"} {
		if !containsToken(alg, a) {
			t.Errorf("Tus-Checksum-Algorithm %q lacks %s", alg, a)
		}
	}
	// Browser preflight.
	rep = do(t, req{Method: "OPTIONS", URL: s.Endpoint(), NoTus: true, Header: map[string]string{
		"Origin": "https://app.example", "Access-Control-Request-Method": "PATCH",
		"Access-Control-Request-Headers": "authorization,tus-resumable,upload-offset,content-type,upload-checksum",
	}})
	if rep.Status/100 != 2 || rep.Header.Get("Access-Control-Allow-Origin") == "" {
		t.Errorf("preflight: got %d Allow-Origin %q, want 2xx and an origin", rep.Status, rep.Header.Get("Access-Control-Allow-Origin"))
	}
	// Real responses expose the TUS headers.
	up := createUpload(t, s, acmeKey, 4)
	rep = do(t, req{Method: "HEAD", URL: up.Location, Key: acmeKey, Header: map[string]string{"Origin": "https://app.example"}})
	expose := strings.ToLower(rep.Header.Get("Access-Control-Expose-Headers"))
	for _, h := range []string{"upload-offset", "upload-length", "location", "tus-resumable"} {
		if !strings.Contains(expose, h) {
			t.Errorf("HEAD Access-Control-Expose-Headers %q lacks %s", expose, h)
		}
	}
	if rep.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("HEAD Cache-Control: got %q, want no-store", rep.Header.Get("Cache-Control"))
	}
	if rep.Header.Get("Upload-Length") != "4" || rep.Header.Get("Upload-Expires") == "" || rep.Header.Get("Upload-Metadata") == "" {
		t.Errorf("HEAD headers: %v", rep.Header)
	}
}

// TestProtocolExtras covers Uppy's MIME type, X-HTTP-Method-Override and
// X-Forwarded-Proto/Host in Location.
func TestProtocolExtras(t *testing.T) {
	s := startServer(t)
	rep := do(t, req{Method: "POST", URL: s.Endpoint(), Key: acmeKey, Header: map[string]string{
		"Upload-Length": "3", "Upload-Metadata": "type " + b64("audio/wav") + ",filename " + b64("a.wav") + ",custom " + b64("kept"),
		"X-Forwarded-Proto": "https", "X-Forwarded-Host": "ingest.example",
	}})
	if rep.Status != 201 {
		t.Fatalf("POST type=audio/wav: got %d %s, want 201", rep.Status, rep.Body)
	}
	var body struct {
		SessionID string `json:"session_id"`
		Asset     asset  `json:"asset"`
	}
	if err := json.Unmarshal(rep.Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Asset.Type != "audio" {
		t.Errorf("asset type from audio/wav: got %q, want audio", body.Asset.Type)
	}
	if want := "https://ingest.example" + tusPath + "/" + body.SessionID; rep.Header.Get("Location") != want {
		t.Errorf("Location behind proxy: got %q, want %q", rep.Header.Get("Location"), want)
	}
	loc := s.Endpoint() + "/" + body.SessionID
	head := do(t, req{Method: "HEAD", URL: loc, Key: acmeKey})
	if !strings.Contains(head.Header.Get("Upload-Metadata"), "custom "+b64("kept")) {
		t.Errorf("HEAD Upload-Metadata %q lacks the unknown key", head.Header.Get("Upload-Metadata"))
	}
	rep = do(t, req{Method: "POST", URL: loc, Key: acmeKey, Body: strings.NewReader("abc"), Header: map[string]string{
		"X-HTTP-Method-Override": "PATCH", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
	}})
	if rep.Status != 204 || rep.Header.Get("Upload-Offset") != "3" {
		t.Fatalf("POST overridden to PATCH: got %d %s offset %q, want 204 and 3", rep.Status, rep.Body, rep.Header.Get("Upload-Offset"))
	}
	wantReady(t, s, acmeKey, body.Asset.ID, []byte("abc"))
}

func containsToken(list, tok string) bool {
	for f := range strings.SplitSeq(list, ",") {
		if strings.TrimSpace(f) == tok {
			return true
		}
	}
	return false
}
