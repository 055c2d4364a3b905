package browsere2e

import (
	"os"
	"path/filepath"
	"testing"
)

const (
	blobSize  = 3 << 20
	chunkSize = 1 << 20
)

// checkReady GETs the asset from Go and checks it, and its download,
// against the bytes the page generated.
func checkReady(t *testing.T, r *roughy, res pageResult, want []byte) {
	t.Helper()
	if res.URL == nil {
		t.Fatalf("page reported no upload URL")
	}
	a := r.Asset(t, assetIDOf(t, *res.URL))
	if a.State != "ready" {
		t.Errorf("asset state %q, want ready", a.State)
	}
	if a.Type != "video" {
		t.Errorf("asset type %q, want video", a.Type)
	}
	if a.SizeBytes == nil || *a.SizeBytes != int64(len(want)) {
		t.Errorf("asset size_bytes %v, want %d", a.SizeBytes, len(want))
	}
	if a.SHA256 != sha256Hex(want) {
		t.Errorf("asset sha256 %q, want %q", a.SHA256, sha256Hex(want))
	}
	if res.SHA256 != sha256Hex(want) {
		t.Errorf("page's crypto.subtle sha256 %q, Go's %q (generators disagree)", res.SHA256, sha256Hex(want))
	}
	checkDownload(t, a, want)
}

// TestBrowserUploadAllowedOrigin: the page's origin is in --cors-origins;
// tus-js-client creates the upload, PATCHes 3 chunks and succeeds.
func TestBrowserUploadAllowedOrigin(t *testing.T) {
	page := startPageServer(t)
	r := startRoughy(t, page.Origin)
	want := makeBytes(blobSize, 0x5eed0001)

	res := runBrowser(t, page, pageParams{Endpoint: r.Endpoint(), Mode: "upload", Size: blobSize, Chunk: chunkSize, Seed: 0x5eed0001})
	if !res.OK {
		t.Fatalf("upload failed in the browser: %s", res.Error)
	}
	var posts, patches int
	for _, resp := range res.Responses {
		switch resp.Method {
		case "POST":
			posts++
			if resp.Status != 201 || resp.Location == nil {
				t.Errorf("POST seen by the page: status %d, Location %v (Location must be exposed)", resp.Status, resp.Location)
			}
		case "PATCH":
			patches++
			if resp.Status != 204 || resp.Offset == nil {
				t.Errorf("PATCH seen by the page: status %d, Upload-Offset %v (must be exposed)", resp.Status, resp.Offset)
			}
		}
	}
	if posts != 1 || patches != blobSize/chunkSize {
		t.Errorf("page saw %d POST and %d PATCH, want 1 and %d", posts, patches, blobSize/chunkSize)
	}
	checkReady(t, r, res, want)
}

// TestBrowserAbortResume: the page aborts after the first chunk, then a new
// tus.Upload finds the stored upload (findPreviousUploads), resumes from the
// server's offset (HEAD) and completes.
func TestBrowserAbortResume(t *testing.T) {
	page := startPageServer(t)
	r := startRoughy(t, page.Origin)
	want := makeBytes(blobSize, 0x5eed0002)

	res := runBrowser(t, page, pageParams{Endpoint: r.Endpoint(), Mode: "resume", Size: blobSize, Chunk: chunkSize, Seed: 0x5eed0002})
	if res.First == nil || !res.First.Aborted {
		t.Fatalf("first pass did not abort mid-upload: %+v (error %s)", res.First, res.Error)
	}
	if !res.OK {
		t.Fatalf("resumed upload failed in the browser: %s", res.Error)
	}
	if res.PreviousCount < 1 {
		t.Errorf("findPreviousUploads found %d uploads", res.PreviousCount)
	}
	if res.First.URL == nil || res.URL == nil || *res.First.URL != *res.URL {
		t.Errorf("resume used upload URL %v, first pass had %v", res.URL, res.First.URL)
	}
	var posts, heads int
	for _, resp := range res.Responses {
		switch resp.Method {
		case "POST":
			posts++
		case "HEAD":
			heads++
			if resp.Status != 200 || resp.Offset == nil || *resp.Offset == "0" {
				t.Errorf("HEAD on resume: status %d, Upload-Offset %v; want 200 and a non-zero exposed offset", resp.Status, resp.Offset)
			}
		}
	}
	if posts != 0 || heads < 1 {
		t.Errorf("resume pass sent %d POST and %d HEAD, want 0 POST (no new upload) and ≥1 HEAD", posts, heads)
	}
	checkReady(t, r, res, want)
}

// TestBrowserOriginNotAllowed: the page's origin is not in --cors-origins;
// the browser blocks the upload (onError) and the server stores nothing.
func TestBrowserOriginNotAllowed(t *testing.T) {
	page := startPageServer(t)
	other := startPageServer(t) // an allowed origin that is not the page's
	r := startRoughy(t, other.Origin)

	res := runBrowser(t, page, pageParams{Endpoint: r.Endpoint(), Mode: "denied", Size: blobSize, Chunk: chunkSize, Seed: 0x5eed0003})
	if res.OK {
		t.Fatalf("upload from a disallowed origin succeeded: %+v", res)
	}
	if res.Error == "" {
		t.Errorf("onError fired without a message")
	}
	if res.URL != nil {
		t.Errorf("page got an upload URL %q from a disallowed origin", *res.URL)
	}
	if len(res.Responses) != 0 {
		t.Errorf("page read %d responses from a disallowed origin: %+v", len(res.Responses), res.Responses)
	}
	entries, err := os.ReadDir(filepath.Join(r.DataDir, "uploads"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("read uploads dir: %v", err)
	}
	if len(entries) != 0 {
		t.Errorf("server stored %d uploads for a disallowed origin", len(entries))
	}

	// Control: the same server, from its allowed origin, takes the upload,
	// so the failure above was the origin and not a broken server.
	want := makeBytes(blobSize, 0x5eed0004)
	ok := runBrowser(t, other, pageParams{Endpoint: r.Endpoint(), Mode: "upload", Size: blobSize, Chunk: chunkSize, Seed: 0x5eed0004})
	if !ok.OK {
		t.Fatalf("control upload from the allowed origin failed: %s", ok.Error)
	}
	checkReady(t, r, ok, want)
}
