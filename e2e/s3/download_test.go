package s3e2e

import (
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestPresignedDownloadHeaders: a presigned download_url makes S3 answer
// with the same Content-Type and Content-Disposition as a local download:
// media types as stored, anything else as application/octet-stream, and
// an attachment with the file name (RFC 8187 for UTF-8 names).
func TestPresignedDownloadHeaders(t *testing.T) { eachS3(t, testPresignedDownloadHeaders) }

func testPresignedDownloadHeaders(t *testing.T, backend testsvc.S3Backend) {
	gw := startGateway(t, backend)
	srv := startRoughy(t, gw)
	ctx := testCtx(t)
	c := newClient(t, srv, acmeKey)
	tests := []struct {
		contentType, filename string
		wantType, wantDisp    string
	}{
		{"video/mp4", "clip.mp4", "video/mp4", `attachment; filename="clip.mp4"`},
		{"text/html", "épisode 1.html", "application/octet-stream",
			`attachment; filename="_pisode 1.html"; filename*=UTF-8''%C3%A9pisode%201.html`},
	}
	for i, tt := range tests {
		src := randomBytes(t, 64<<10, uint64(20+i))
		loc, id := c.create(ctx, int64(len(src)), map[string]string{
			"type": "video", "content_type": tt.contentType, "filename": tt.filename}, nil)
		c.patchOK(ctx, loc, 0, src)
		st, a := c.asset(ctx, id)
		if st != http.StatusOK || a.DownloadURL == "" {
			t.Fatalf("GET asset %s: %d, download_url %q", id, st, a.DownloadURL)
		}
		u, err := url.Parse(a.DownloadURL)
		if err != nil {
			t.Fatalf("download_url %q: %v", a.DownloadURL, err)
		}
		q := u.Query()
		if got := []string{q.Get("response-content-type"), q.Get("response-content-disposition")}; got[0] != tt.wantType || got[1] != tt.wantDisp {
			t.Errorf("download_url of content_type %q: response-content-type, -disposition %q, want %q %q", tt.contentType, got, tt.wantType, tt.wantDisp)
		}
		resp, err := http.Get(a.DownloadURL)
		if err != nil {
			t.Fatalf("GET download_url: %v", err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("GET download_url: read: %v", err)
		}
		// The headers are for the bytes the upload sent.
		checkBytes(t, "download_url body", got, src)
		if got := []string{resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition")}; resp.StatusCode != http.StatusOK ||
			got[0] != tt.wantType || got[1] != tt.wantDisp {
			t.Errorf("GET download_url of content_type %q: %d %q, want 200 %q %q", tt.contentType, resp.StatusCode, got, tt.wantType, tt.wantDisp)
		}
	}
}
