package browsere2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// directUpload is the part of a minted direct upload the tests use.
type directUpload struct {
	ID        string `json:"id"`
	UploadURL string `json:"upload_url"`
}

// mintDirect is the customer's backend: it mints a direct upload URL with
// the API key, for a page of origins.
func (r *roughy) mintDirect(t *testing.T, origins ...string) directUpload {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"type": "video", "max_size_bytes": blobSize, "expires_in": 300, "allowed_origins": origins})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, r.URL+"/api/v1/direct-uploads", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+acmeKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var d directUpload
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(raw, &d) != nil || d.UploadURL == "" {
		t.Fatalf("mint: got %d %s, want 201 with upload_url", resp.StatusCode, raw)
	}
	return d
}

// TestBrowserDirectUpload: a page of another origin, with no key at all,
// uploads with tus-js-client through a direct upload URL whose
// allowed_origins name it. The server's own --cors-origins does not: the
// grant's origins are what lets the browser through.
func TestBrowserDirectUpload(t *testing.T) {
	page := startPageServer(t)
	r := startRoughy(t, "https://not-the-page.invalid")
	d := r.mintDirect(t, page.Origin)
	want := makeBytes(blobSize, 0x5eed0011)

	res := runBrowser(t, page, pageParams{Endpoint: d.UploadURL, Mode: "upload", Size: blobSize, Chunk: chunkSize, Seed: 0x5eed0011, NoKey: true})
	if !res.OK {
		t.Fatalf("direct upload failed in the browser: %s", res.Error)
	}
	if res.URL == nil || *res.URL != d.UploadURL {
		t.Errorf("tus-js-client's upload URL: got %v, want the direct upload URL %s", res.URL, d.UploadURL)
	}
	var posts, patches int
	for _, resp := range res.Responses {
		switch resp.Method {
		case "POST":
			posts++
			if resp.Status != 201 || resp.Location == nil || *resp.Location != d.UploadURL {
				t.Errorf("POST seen by the page: status %d, Location %v; want 201 and the URL", resp.Status, resp.Location)
			}
		case "PATCH":
			patches++
			if resp.Status != 204 || resp.Offset == nil {
				t.Errorf("PATCH seen by the page: status %d, Upload-Offset %v", resp.Status, resp.Offset)
			}
		}
	}
	if posts != 1 || patches != blobSize/chunkSize {
		t.Errorf("page saw %d POST and %d PATCH, want 1 and %d", posts, patches, blobSize/chunkSize)
	}
	res.URL = &d.UploadURL
	checkDirectReady(t, r, d.ID, res, want)
}

// checkDirectReady is checkReady for a direct upload's asset id.
func checkDirectReady(t *testing.T, r *roughy, id string, res pageResult, want []byte) {
	t.Helper()
	a := r.Asset(t, id)
	if a.State != "ready" || a.SizeBytes == nil || *a.SizeBytes != int64(len(want)) || a.SHA256 != sha256Hex(want) {
		t.Errorf("asset: got state %q size %v sha256 %q, want ready %d %s", a.State, a.SizeBytes, a.SHA256, len(want), sha256Hex(want))
	}
	if res.SHA256 != sha256Hex(want) {
		t.Errorf("page's crypto.subtle sha256 %q, Go's %q (generators disagree)", res.SHA256, sha256Hex(want))
	}
	checkDownload(t, a, want)
}

// TestBrowserDirectUploadOriginNotAllowed: the same page, with a direct
// upload URL minted for another origin, is blocked (the server's
// --cors-origins "*" would have let it in) and nothing is created; from
// the grant's origin the same URL then works.
func TestBrowserDirectUploadOriginNotAllowed(t *testing.T) {
	page := startPageServer(t)
	other := startPageServer(t)
	r := startRoughy(t, "*")
	d := r.mintDirect(t, other.Origin)

	res := runBrowser(t, page, pageParams{Endpoint: d.UploadURL, Mode: "denied", Size: blobSize, Chunk: chunkSize, Seed: 0x5eed0012, NoKey: true})
	if res.OK {
		t.Fatalf("direct upload from a disallowed origin succeeded: %+v", res)
	}
	if len(res.Responses) != 0 {
		t.Errorf("page read %d responses from a disallowed origin: %+v", len(res.Responses), res.Responses)
	}
	if a := r.Asset(t, d.ID); a.State != "waiting" {
		t.Errorf("asset after the refused page: got state %q, want waiting (no upload created)", a.State)
	}

	want := makeBytes(blobSize, 0x5eed0013)
	ok := runBrowser(t, other, pageParams{Endpoint: d.UploadURL, Mode: "upload", Size: blobSize, Chunk: chunkSize, Seed: 0x5eed0013, NoKey: true})
	if !ok.OK {
		t.Fatalf("control upload from the grant's origin failed: %s", ok.Error)
	}
	checkDirectReady(t, r, d.ID, ok, want)
}
