package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGracefulShutdown sends SIGTERM while a PATCH streams: the PATCH
// either finishes (204) or what was durable is committed, the process
// exits, and after a restart nothing acknowledged is missing.
func TestGracefulShutdown(t *testing.T) {
	s := startServer(t, withArgs("--shutdown-timeout", "20s"))
	data := randomBytes(16 << 20)
	up := createUpload(t, s, acmeKey, int64(len(data)))
	p := openRawPatch(t, up.Location, acmeKey, 0, int64(len(data)), nil)
	if err := p.WriteSlowly(data[:4<<20], 1<<20, 20*time.Millisecond); err != nil {
		t.Fatalf("PATCH start: %v", err)
	}
	exited := s.Terminate()
	time.Sleep(200 * time.Millisecond)
	writeErr := p.WriteSlowly(data[4<<20:], 1<<20, 5*time.Millisecond)
	rep, readErr := p.Response(30 * time.Second)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("roughy still running 30s after SIGTERM")
	}
	s.Restart()
	loc := s.Endpoint() + "/" + up.SessionID
	off := headOffset(t, loc, acmeKey)
	if readErr == nil && rep.Status == http.StatusNoContent {
		t.Logf("in-flight PATCH finished during the drain")
		if off != int64(len(data)) {
			t.Fatalf("offset after an acknowledged PATCH and a restart: got %d, want %d", off, len(data))
		}
	} else {
		t.Logf("in-flight PATCH ended without 204 (write %v, read %v, status %d); offset %d", writeErr, readErr, rep.Status, off)
		if off > p.sent {
			t.Fatalf("offset %d is above the %d bytes sent", off, p.sent)
		}
		if r := patchRetry(t, loc, acmeKey, off, data[off:]); r.Status != http.StatusNoContent {
			t.Fatalf("resume after restart: got %d %s", r.Status, r.Body)
		}
	}
	wantReady(t, s, acmeKey, up.AssetID, data)
}

// TestDownloadRangeAndHead checks the signed local download: HEAD, a
// Range request, and no auth needed.
func TestDownloadRangeAndHead(t *testing.T) {
	s := startServer(t)
	data := randomBytes(300_000)
	up := createUpload(t, s, acmeKey, int64(len(data)))
	if rep := patch(t, up.Location, acmeKey, 0, data); rep.Status != 204 {
		t.Fatalf("PATCH: got %d %s", rep.Status, rep.Body)
	}
	a := wantReady(t, s, acmeKey, up.AssetID, data)
	if !strings.Contains(a.DownloadURL, "/sign/assets/uploads/") {
		t.Errorf("download_url %q: want a /sign/assets/uploads/… URL of this server", a.DownloadURL)
	}
	head, err := http.NewRequest("HEAD", a.DownloadURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(head)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(data)) {
		t.Errorf("HEAD download: got %d length %d, want 200 and %d", resp.StatusCode, resp.ContentLength, len(data))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "video/mp4" {
		t.Errorf("download Content-Type: got %q, want video/mp4 (from metadata)", ct)
	}
	get, _ := http.NewRequest("GET", a.DownloadURL, nil)
	get.Header.Set("Range", "bytes=1000-1999")
	resp, err = client.Do(get)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[1000:2000]) {
		t.Errorf("Range download: got %d, %d bytes (equal %v), want 206 and bytes 1000-1999",
			resp.StatusCode, len(body), bytes.Equal(body, data[1000:2000]))
	}
	if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes 1000-1999/%d", len(data)) {
		t.Errorf("Content-Range: got %q", cr)
	}
}

// TestDeleteFreesBytes: DELETE mid-upload is 204 (twice), frees the local
// bytes, and the upload and asset are gone.
func TestDeleteFreesBytes(t *testing.T) {
	s := startServer(t)
	up := createUpload(t, s, acmeKey, 1<<20)
	if rep := patch(t, up.Location, acmeKey, 0, randomBytes(100_000)); rep.Status != 204 {
		t.Fatalf("PATCH: got %d %s", rep.Status, rep.Body)
	}
	stored := filepath.Join(s.DataDir, "uploads", up.AssetID)
	if _, err := os.Stat(stored); err != nil {
		t.Fatalf("stored bytes before DELETE: %v", err)
	}
	for i := range 2 {
		if rep := do(t, req{Method: "DELETE", URL: up.Location, Key: acmeKey}); rep.Status != 204 {
			t.Fatalf("DELETE #%d: got %d %s, want 204", i+1, rep.Status, rep.Body)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(stored); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists 10s after DELETE", stored)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rep := do(t, req{Method: "HEAD", URL: up.Location, Key: acmeKey}); rep.Status != 404 && rep.Status != 410 {
		t.Errorf("HEAD after DELETE: got %d, want 404 or 410", rep.Status)
	}
	if st, _ := getAsset(t, s, acmeKey, up.AssetID); st != 404 {
		t.Errorf("GET asset after DELETE: got %d, want 404", st)
	}
}

// TestHealthAndEnvTwins: /healthz, /readyz, /metrics, and flags given as
// their ROUGHY_* environment twins (public URL, expiry).
func TestHealthAndEnvTwins(t *testing.T) {
	s := startServer(t, withEnv("ROUGHY_PUBLIC_URL=https://ingest.example", "ROUGHY_UPLOAD_EXPIRY=90m"))
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := client.Get(s.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: got %d, want 200", p, resp.StatusCode)
		}
		if p == "/metrics" && !bytes.Contains(body, []byte("# TYPE ")) {
			t.Errorf("/metrics is not Prometheus text: %.200q", body)
		}
	}
	rep := do(t, req{Method: "POST", URL: s.Endpoint(), Key: acmeKey,
		Header: map[string]string{"Upload-Length": "5", "Upload-Metadata": videoMeta("x")}})
	if rep.Status != 201 || !strings.HasPrefix(rep.Header.Get("Location"), "https://ingest.example"+tusPath+"/") {
		t.Fatalf("POST with ROUGHY_PUBLIC_URL: got %d Location %q", rep.Status, rep.Header.Get("Location"))
	}
	exp, err := http.ParseTime(rep.Header.Get("Upload-Expires"))
	if err != nil {
		t.Fatalf("Upload-Expires %q: %v", rep.Header.Get("Upload-Expires"), err)
	}
	if d := time.Until(exp); d < 85*time.Minute || d > 95*time.Minute {
		t.Errorf("Upload-Expires with ROUGHY_UPLOAD_EXPIRY=90m: got %v from now", d)
	}
}

// TestExpiryJanitorAndDownloadTTL: with a 2 s expiry and a fast janitor,
// an abandoned upload's bytes are freed; a download_url with a 2 s TTL is
// refused with 403 once it expired.
func TestExpiryJanitorAndDownloadTTL(t *testing.T) {
	s := startServer(t, withArgs("--upload-expiry", "2s", "--janitor-interval", "300ms", "--download-ttl", "2s"))
	up := createUpload(t, s, acmeKey, 1<<20)
	if rep := patch(t, up.Location, acmeKey, 0, randomBytes(1000)); rep.Status != 204 {
		t.Fatalf("PATCH: got %d %s", rep.Status, rep.Body)
	}
	done := createUpload(t, s, acmeKey, 3)
	if rep := patch(t, done.Location, acmeKey, 0, []byte("abc")); rep.Status != 204 {
		t.Fatalf("PATCH: got %d %s", rep.Status, rep.Body)
	}
	wantReady(t, s, acmeKey, done.AssetID, []byte("abc"))

	stored := filepath.Join(s.DataDir, "uploads", up.AssetID)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(stored); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s of an expired upload still exists after 10s", stored)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rep := patch(t, up.Location, acmeKey, 1000, []byte("x")); rep.Status != 410 && rep.Status != 404 {
		t.Errorf("PATCH after the janitor ran: got %d, want 410 (or 404)", rep.Status)
	}
	// A completed upload does not expire.
	a := wantReady(t, s, acmeKey, done.AssetID, []byte("abc"))

	time.Sleep(3 * time.Second)
	resp, err := client.Get(a.DownloadURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("expired download_url: got %d, want 403", resp.StatusCode)
	}
}
