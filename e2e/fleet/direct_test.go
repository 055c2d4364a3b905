package fleet

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestFleetDirectUploadOneCreation: a direct upload URL minted on one node
// creates exactly one upload when twelve creations with it race on three
// nodes; the winner's client uploads through the other nodes with the
// same URL, no key, and the asset is complete and intact.
func TestFleetDirectUploadOneCreation(t *testing.T) {
	f := startFleet(t, 3)
	src := randomBytes(9<<20 + 321)
	mint := mustSend(t, "POST", f.nodes[0].URL+"/api/v1/direct-uploads", map[string]string{"Content-Type": "application/json"},
		strings.NewReader(`{"type":"video","max_size_bytes":`+strconv.Itoa(len(src))+`,"expires_in":600}`))
	if mint.Status != http.StatusCreated {
		t.Fatalf("mint on %s: got %d %s, want 201", f.nodes[0].URL, mint.Status, mint.Body)
	}
	var d struct {
		ID        string `json:"id"`
		UploadURL string `json:"upload_url"`
	}
	if err := json.Unmarshal(mint.Body, &d); err != nil || d.UploadURL == "" {
		t.Fatalf("mint body %q: %v", mint.Body, err)
	}

	const racers = 12
	answers := make([]answer, racers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range racers {
		n := f.nodes[i%3]
		wg.Go(func() {
			<-start
			a, err := sendAs(t.Context(), "", "POST", n.at(d.UploadURL), map[string]string{
				"Upload-Length": strconv.Itoa(len(src)), "Upload-Metadata": "filename ZmxlZXQubXA0"}, nil)
			if err != nil {
				t.Errorf("POST %d on %s: %v", i, n.URL, err)
			}
			answers[i] = a
		})
	}
	close(start)
	wg.Wait()
	var created, used int
	for i, a := range answers {
		switch {
		case a.Status == http.StatusCreated:
			created++
		case a.Status == http.StatusForbidden && bytes.Contains(a.Body, []byte(`"direct_upload_used"`)):
			used++
		default:
			t.Errorf("POST %d: got %d %s, want 201 or 403 direct_upload_used", i, a.Status, a.Body)
		}
	}
	if created != 1 || used != racers-1 {
		t.Fatalf("racing creations: got %d created and %d refused as used, want 1 and %d", created, used, racers-1)
	}

	// The creation's client resumes on every node with the same URL.
	half := int64(len(src) / 2)
	for i, part := range []struct{ from, to int64 }{{0, half}, {half, int64(len(src))}} {
		n := f.nodes[(i+1)%3]
		a, err := sendAs(t.Context(), "", "PATCH", n.at(d.UploadURL), map[string]string{
			"Upload-Offset": strconv.FormatInt(part.from, 10), "Content-Type": "application/offset+octet-stream"},
			bytes.NewReader(src[part.from:part.to]))
		if err != nil || a.Status != http.StatusNoContent {
			t.Fatalf("PATCH %d on %s: got %d %s, %v; want 204", i, n.URL, a.Status, a.Body, err)
		}
		h, err := sendAs(t.Context(), "", "HEAD", f.nodes[(i+2)%3].at(d.UploadURL), nil, nil)
		if err != nil || h.Status != http.StatusOK || h.Header.Get("Upload-Offset") != strconv.FormatInt(part.to, 10) {
			t.Fatalf("HEAD after PATCH %d: got %d offset %q, %v; want 200 %d", i, h.Status, h.Header.Get("Upload-Offset"), err, part.to)
		}
	}
	a := readyAsset(t, f.nodes[0], d.ID)
	sum := sha256.Sum256(src)
	if a.SHA256 != hex.EncodeToString(sum[:]) || a.SizeBytes != int64(len(src)) {
		t.Fatalf("asset: got sha256 %s size %d, want %x %d", a.SHA256, a.SizeBytes, sum, len(src))
	}
	wantDownload(t, "asset "+d.ID, a.DownloadURL, src)
}
