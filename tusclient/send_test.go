package tusclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faults sits in front of a real TUS server and breaks the n-th PATCH
// (1-based) as faults[n] says: a status, or "cut" (half the body reaches
// the server, then the connection drops).
type faults struct {
	rp      *httputil.ReverseProxy
	mu      sync.Mutex
	patches int
	plan    map[int]string
	fired   []string
	badSum  []string
}

func (f *faults) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPatch {
		f.rp.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	sum := sha256.Sum256(body)
	f.mu.Lock()
	f.patches++
	fault := f.plan[f.patches]
	if fault != "" {
		f.fired = append(f.fired, fault)
	}
	if want := "sha256 " + base64.StdEncoding.EncodeToString(sum[:]); r.Header.Get("Upload-Checksum") != want {
		f.badSum = append(f.badSum, r.Header.Get("Upload-Checksum"))
	}
	f.mu.Unlock()
	switch fault {
	case "":
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.rp.ServeHTTP(w, r)
	case "cut":
		r2 := r.Clone(r.Context())
		r2.Body = io.NopCloser(bytes.NewReader(body[:len(body)/2]))
		r2.ContentLength = int64(len(body) / 2)
		r2.Header.Del("Upload-Checksum")
		f.rp.ServeHTTP(httptest.NewRecorder(), r2)
		if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
			c.Close()
		}
	default:
		status, _ := strconv.Atoi(fault)
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(status)
	}
}

// TestSendResumesThroughFaults sends a file through 503, a cut PATCH,
// 423 and 460 with checksums on and checks what tusd stored, and that
// OnAcked saw every step.
func TestSendResumesThroughFaults(t *testing.T) {
	endpoint, dir := startTusd(t)
	target, _ := url.Parse(endpoint)
	target.Path = ""
	fp := &faults{rp: httputil.NewSingleHostReverseProxy(target), plan: map[int]string{1: "503", 3: "cut", 5: "423", 7: "460"}}
	proxy := httptest.NewServer(fp)
	defer proxy.Close()

	src := make([]byte, 1<<20+99)
	rand.Read(src)
	file := filepath.Join(t.TempDir(), "src.bin")
	if err := os.WriteFile(file, src, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	var acks []int64
	var sent atomic.Int64
	c := &Client{Endpoint: proxy.URL + "/files/", ChunkSize: 256 << 10, Checksum: true, Stall: time.Minute,
		OnSent:  func(off int64) { sent.Store(off) },
		OnAcked: func(off int64, _ bool) { acks = append(acks, off) }}
	cr, err := c.Create(t.Context(), int64(len(src)))
	if err != nil {
		t.Fatal(err)
	}
	var retried []string
	r := Retry{Retries: 3, BackoffBase: time.Millisecond, BackoffMax: 10 * time.Millisecond,
		OnRetry: func(err error, _ time.Duration) { retried = append(retried, err.Error()) }}
	if err := c.Send(t.Context(), cr.URL, f, 0, int64(len(src)), r); err != nil {
		t.Fatalf("%v (retried: %q)", err, retried)
	}
	stored, err := os.ReadFile(filepath.Join(dir, path.Base(cr.URL)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored, src) {
		t.Fatalf("tusd stored %d bytes that differ from the %d sent", len(stored), len(src))
	}
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if len(fp.fired) != 4 || len(retried) != 4 {
		t.Errorf("faults fired %v, retried %q; want 4 of each", fp.fired, retried)
	}
	if len(fp.badSum) != 0 {
		t.Errorf("PATCHes with a wrong Upload-Checksum: %q", fp.badSum)
	}
	if got := acks[len(acks)-1]; got != int64(len(src)) || sent.Load() != int64(len(src)) {
		t.Errorf("last ack %d, last sent %d; want %d", got, sent.Load(), len(src))
	}
}

// TestSendGivesUp: a retryable failure in a row once more than Retries
// ends Send with a *GiveUpError that keeps the status; a 401 is not
// retried at all.
func TestSendGivesUp(t *testing.T) {
	var calls atomic.Int64
	status := http.StatusServiceUnavailable
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.WriteHeader(status)
	}))
	defer srv.Close()
	c := &Client{Endpoint: srv.URL, ChunkSize: 10}
	r := Retry{Retries: 2, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}
	err := c.Send(t.Context(), srv.URL+"/u", bytes.NewReader(make([]byte, 30)), 0, 30, r)
	ge, ok := errors.AsType[*GiveUpError](err)
	if !ok || ge.Tries != 3 {
		t.Fatalf("err %v, want a *GiveUpError after 3 tries", err)
	}
	if se, ok := errors.AsType[*StatusError](err); !ok || se.Status != 503 || se.Method != http.MethodHead {
		t.Errorf("err %v, want the HEAD's 503 inside", err)
	}
	if calls.Load() != 3 {
		t.Errorf("%d requests, want 3 (PATCH, HEAD, HEAD)", calls.Load())
	}

	calls.Store(0)
	status = http.StatusUnauthorized
	err = c.Send(t.Context(), srv.URL+"/u", bytes.NewReader(make([]byte, 30)), 0, 30, r)
	if se, ok := errors.AsType[*StatusError](err); !ok || se.Status != 401 || calls.Load() != 1 {
		t.Errorf("err %v after %d requests, want the 401 after 1", err, calls.Load())
	}
}

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&StatusError{Status: 500}, true},
		{&StatusError{Status: 503}, true},
		{&StatusError{Status: 409}, true},
		{&StatusError{Status: 423}, true},
		{&StatusError{Status: 429}, true},
		{&StatusError{Status: 460}, true},
		{&StatusError{Status: 400}, false},
		{&StatusError{Status: 401}, false},
		{&StatusError{Status: 404}, false},
		{errors.New("connection reset"), true},
		{fmt.Errorf("x: %w", context.Canceled), false},
		{fmt.Errorf("x: %w", Permanent(errors.New("length differs"))), false},
	} {
		if got := Retryable(tc.err); got != tc.want {
			t.Errorf("Retryable(%v): got %v, want %v", tc.err, got, tc.want)
		}
	}
	for status, want := range map[int]bool{404: true, 410: true, 403: true, 401: false, 500: false} {
		if got := Gone(&StatusError{Status: status}); got != want {
			t.Errorf("Gone(%d): got %v, want %v", status, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	base, maxWait := 500*time.Millisecond, 8*time.Second
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	for i, w := range want {
		if got := Backoff(i+1, base, maxWait); got != w {
			t.Errorf("Backoff(%d): got %v, want %v", i+1, got, w)
		}
	}
}

func TestStatusErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		e    *StatusError
		want string
	}{
		{&StatusError{Op: "create upload", Status: 401, Body: `{"error":{"code":"unauthorized","message":"unknown API key"}}`, name: "roughy"},
			"roughy: create upload: HTTP 401 unauthorized: unknown API key"},
		{&StatusError{Op: "PATCH at 0", Status: 409, Body: " offset mismatch\n"}, "tusclient: PATCH at 0: HTTP 409 offset mismatch"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestCreatedAssetID(t *testing.T) {
	for _, tc := range []struct {
		cr   Created
		want string
	}{
		{Created{URL: "http://h/api/v1/assets/upload-resumable/s1", Body: []byte(`{"session_id":"s1","asset":{"id":"a1"}}`)}, "a1"},
		{Created{URL: "http://h/files/abc"}, "abc"},
	} {
		if got := tc.cr.AssetID(); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.cr, got, tc.want)
		}
	}
}

// TestPatchStalls: a server that takes a PATCH but never reads its body
// is given up on once the body made no progress for Stall.
func TestPatchStalls(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	c := &Client{Endpoint: srv.URL, Stall: 200 * time.Millisecond}
	// Larger than what the loopback socket buffers take in.
	src := bytes.NewReader(make([]byte, 64<<20))
	_, err := c.Patch(t.Context(), srv.URL+"/u", src, 0, src.Size())
	if !errors.Is(err, errStalled) || !Retryable(err) {
		t.Fatalf("err %v, want the stall (retryable)", err)
	}
}
