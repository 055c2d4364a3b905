package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"

	"github.com/roughy/ingest/sessionstore/bolt"
)

// env is one real server on a loopback port over the embedded store and
// the local sink in a temp dir, with two accounts.
type env struct {
	t      testing.TB
	srv    *Server
	store  sessionstore.Store
	local  *bolt.Store
	dir    string
	addr   string // host:port
	url    string // http://host:port
	keys   map[string]string
	client *http.Client
}

// newEnv starts a server. wrap, when set, puts a fake around the store;
// sinkOpts configure the local sink.
func newEnv(t testing.TB, cfgMod func(*Config), wrap func(sessionstore.Store) sessionstore.Store, sinkOpts ...pipeline.LocalOption) *env {
	t.Helper()
	return newEnvSink(t, cfgMod, wrap, nil, sinkOpts...)
}

// newEnvSink is newEnv with wrapSink, when set, putting a fake around the
// local sink.
func newEnvSink(t testing.TB, cfgMod func(*Config), wrap func(sessionstore.Store) sessionstore.Store,
	wrapSink func(pipeline.Sink) pipeline.Sink, sinkOpts ...pipeline.LocalOption) *env {
	t.Helper()
	dir := t.TempDir()
	local, err := bolt.New(filepath.Join(dir, "roughy.db"))
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}
	t.Cleanup(func() { local.Close() })
	sink, err := pipeline.NewLocalSink(dir, sinkOpts...)
	if err != nil {
		t.Fatalf("NewLocalSink: %v", err)
	}
	var store sessionstore.Store = local
	if wrap != nil {
		store = wrap(local)
	}
	logOut := io.Discard
	if os.Getenv("ROUGHY_TEST_LOG") != "" {
		logOut = os.Stderr
	}
	cfg := DefaultConfig()
	cfg.SigningKey = []byte("test signing key")
	cfg.LeaseTTL = 3 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// No free-space floor: /readyz must not depend on the test machine's
	// disk (storage_test.go sets one).
	cfg.MinFreeSpace = 0
	if cfgMod != nil {
		cfgMod(&cfg)
	}
	var psink pipeline.Sink = sink
	if wrapSink != nil {
		psink = wrapSink(sink)
	}
	srv := New(cfg, store, pipeline.New(psink))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	e := &env{
		t: t, srv: srv, store: store, local: local, dir: dir,
		addr: ln.Addr().String(), url: "http://" + ln.Addr().String(),
		keys:   map[string]string{},
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}},
	}
	t.Cleanup(e.client.CloseIdleConnections)
	for _, account := range []string{"acme", "globex"} {
		secret, k := apikey.New(account)
		if err := local.CreateKey(context.Background(), k); err != nil {
			t.Fatalf("CreateKey: %v", err)
		}
		e.keys[account] = secret
	}
	return e
}

// resp is a response read whole.
type resp struct {
	status int
	text   string // status line after the protocol: "460 Checksum Mismatch"
	h      http.Header
	body   []byte
}

func (r resp) errorCode() string {
	var b struct {
		Error struct{ Code, Message string }
	}
	// A body that is not a JSON error has no code: "" is the answer.
	_ = json.Unmarshal(r.body, &b)
	return b.Error.Code
}

// hdr builds headers from "Name", "value" pairs.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// tusHdr is the headers of an authenticated TUS request of account, plus kv.
func (e *env) tusHdr(account string, kv ...string) http.Header {
	h := hdr(kv...)
	if h.Get("Tus-Resumable") == "" {
		h.Set("Tus-Resumable", "1.0.0")
	}
	if account != "" {
		h.Set("Authorization", "Bearer "+e.keys[account])
	}
	return h
}

func (e *env) do(method, target string, h http.Header, body []byte) resp {
	e.t.Helper()
	if !strings.HasPrefix(target, "http") {
		target = e.url + target
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		e.t.Fatalf("NewRequest: %v", err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if body != nil {
		req.ContentLength = int64(len(body))
	}
	r, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return resp{status: r.StatusCode, text: r.Status, h: r.Header, body: b}
}

// created is a POST's answer.
type created struct {
	SessionID string     `json:"session_id"`
	Asset     *assetJSON `json:"asset"`
	Location  string
	resp
}

func md(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, kv[i]+" "+b64(kv[i+1]))
	}
	return strings.Join(parts, ",")
}

// create POSTs a new upload of length bytes (-1: deferred) for account.
func (e *env) create(account string, length int64, kv ...string) created {
	e.t.Helper()
	h := e.tusHdr(account, kv...)
	if length >= 0 {
		h.Set("Upload-Length", strconv.FormatInt(length, 10))
	} else {
		h.Set("Upload-Defer-Length", "1")
	}
	if h.Get("Upload-Metadata") == "" && h.Get("Upload-Concat") == "" {
		h.Set("Upload-Metadata", md("type", "video", "content_type", "video/mp4", "filename", "clip.mp4"))
	}
	r := e.do("POST", uploadsPath, h, nil)
	if r.status != http.StatusCreated {
		e.t.Fatalf("POST: status %d, body %s; want 201", r.status, r.body)
	}
	var c created
	if err := json.Unmarshal(r.body, &c); err != nil {
		e.t.Fatalf("POST body %q: %v", r.body, err)
	}
	c.Location, c.resp = r.h.Get("Location"), r
	return c
}

// patch sends one chunk at offset.
func (e *env) patch(account, loc string, offset int64, chunk []byte, kv ...string) resp {
	e.t.Helper()
	h := e.tusHdr(account, append([]string{"Upload-Offset", strconv.FormatInt(offset, 10),
		"Content-Type", "application/offset+octet-stream"}, kv...)...)
	return e.do("PATCH", loc, h, chunk)
}

func (e *env) head(account, loc string) resp {
	e.t.Helper()
	return e.do("HEAD", loc, e.tusHdr(account), nil)
}

func (e *env) getAsset(account, id string) (resp, assetJSON) {
	e.t.Helper()
	r := e.do("GET", "/api/v1/assets/"+id, hdr("Authorization", "Bearer "+e.keys[account]), nil)
	var a assetJSON
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &a); err != nil {
			e.t.Fatalf("asset body %q: %v", r.body, err)
		}
	}
	return r, a
}

// wantReady fails unless account's asset id is ready with data's size and
// sha256 and its download_url serves exactly data. The sha256 is computed
// from the bytes as they passed the server and proves nothing about what
// the sink holds; the download reads them back through the sink's Open.
func (e *env) wantReady(account, id string, data []byte) assetJSON {
	e.t.Helper()
	r, a := e.getAsset(account, id)
	if r.status != http.StatusOK || a.State != "ready" || a.SizeBytes == nil || *a.SizeBytes != int64(len(data)) || a.SHA256 != sha256Hex(data) {
		e.t.Fatalf("asset %s: %d %s; want ready, %d bytes, sha256 %s", id, r.status, r.body, len(data), sha256Hex(data))
	}
	e.wantDownload(a, data)
	return a
}

// wantDownload fails unless a's download_url serves exactly data. A
// download_url on a configured PublicURL is fetched from this server.
func (e *env) wantDownload(a assetJSON, data []byte) {
	e.t.Helper()
	if a.DownloadURL == "" {
		e.t.Fatalf("asset %s has no download_url", a.ID)
	}
	u := a.DownloadURL
	if pub := strings.TrimRight(e.srv.cfg.PublicURL, "/"); pub != "" {
		u = e.url + strings.TrimPrefix(u, pub)
	}
	d := e.do("GET", u, nil, nil)
	if d.status != http.StatusOK {
		e.t.Fatalf("asset %s: download: %d %.200s, want 200", a.ID, d.status, d.body)
	}
	if err := testsvc.SameBytes(d.body, data); err != nil {
		e.t.Fatalf("asset %s: download: %v", a.ID, err)
	}
}

// stored returns the bytes of an upload's file.
func (e *env) stored(id string) []byte {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, "uploads", id))
	if err != nil {
		e.t.Fatalf("read stored upload: %v", err)
	}
	return b
}

// rawConn is a client connection for requests net/http will not send
// (bodies cut short, lying Content-Length, Expect: 100-continue by hand).
type rawConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func (e *env) raw() *rawConn {
	e.t.Helper()
	return e.rawFrom("")
}

// rawFrom is raw from the loopback address src ("": any).
func (e *env) rawFrom(src string) *rawConn {
	e.t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(60 * time.Second)); err != nil {
		e.t.Fatalf("set deadline: %v", err)
	}
	return &rawConn{t: e.t, c: c, br: bufio.NewReader(c)}
}

// send writes a request head (headers from h) and then body.
// startPatch opens a raw connection, sends a PATCH at offset 0 of c that
// declares size bytes but carries only first, and waits until the server
// streams it (one active upload). The caller writes the rest on rc.
func (e *env) startPatch(c created, size int, first []byte) *rawConn {
	e.t.Helper()
	rc := e.raw()
	rc.send("PATCH", c.Location[len(e.url):], e.tusHdr("acme", "Upload-Offset", "0", "Content-Type", "application/offset+octet-stream",
		"Content-Length", strconv.Itoa(size)), first)
	waitFor(e.t, "the PATCH to stream", func() bool { return e.srv.metrics.activeUploads.Load() == 1 })
	return rc
}

func (rc *rawConn) send(method, path string, h http.Header, body []byte) {
	rc.t.Helper()
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, rc.c.RemoteAddr())
	if err := h.Write(&b); err != nil {
		rc.t.Fatalf("write headers: %v", err)
	}
	b.WriteString("\r\n")
	b.Write(body)
	if _, err := rc.c.Write(b.Bytes()); err != nil {
		rc.t.Fatalf("raw write: %v", err)
	}
}

func (rc *rawConn) write(p []byte) {
	rc.t.Helper()
	if _, err := rc.c.Write(p); err != nil {
		rc.t.Fatalf("raw write: %v", err)
	}
}

func (rc *rawConn) read(method string) resp {
	rc.t.Helper()
	r, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("raw read response: %v", err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return resp{status: r.StatusCode, text: r.Status, h: r.Header, body: b}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// waitFor polls cond every 10ms for up to 5s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
