package fleet

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestIETFAnyNode: the draft in fleet mode, as an iOS app whose network
// changes mid-upload. The whole file goes out in one optimistic creation
// on node 0, which answers 104 with the upload's URL; the client then
// falls silent (its old connection stays open, half dead) and resumes on
// node 1: HEAD, then appends that take the upload over from node 0's
// stalled request; a 409 on the way tells the offset to go on from. The
// last append, on node 2, is answered with the ready asset.
func TestIETFAnyNode(t *testing.T) {
	f := startFleet(t, 3)
	data := make([]byte, 23<<20+77)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}
	key := [2]string{"Authorization", "Bearer " + fleetKey}
	v8 := [2]string{"Upload-Draft-Interop-Version", "8"}

	c := testsvc.DialDraft(t, f.nodes[0].URL)
	c.Start("POST", f.nodes[0].URL+tusPath, testsvc.Hdr{key, v8, {"Upload-Complete", "?1"},
		{"Content-Type", "video/mp4"}, {"Content-Length", strconv.Itoa(len(data))}})
	sent := 12 << 20
	c.Body(data[:sent])
	i := c.Next("POST")
	loc := i.Header.Get("Location")
	if i.Status != 104 || loc == "" {
		t.Fatalf("node 0: got %d %v, want 104 with Location", i.Status, i.Header)
	}
	time.Sleep(500 * time.Millisecond) // node 0 still waits for the rest

	_, h := testsvc.DraftRoundTrip(t, "HEAD", f.nodes[1].at(loc), testsvc.Hdr{key, v8}, nil)
	if h.Status != http.StatusNoContent || h.Header.Get("Upload-Complete") != "?0" {
		t.Fatalf("HEAD on node 1: got %d %v, want 204 with Upload-Complete: ?0", h.Status, h.Header)
	}
	off, _ := strconv.Atoi(h.Header.Get("Upload-Offset"))
	start := time.Now()
	var r testsvc.DraftReply
	for attempt := 0; ; attempt++ {
		n := f.nodes[1]
		end := min(off+8<<20, len(data))
		if end == len(data) {
			n = f.nodes[2]
		}
		_, r = testsvc.DraftRoundTrip(t, "PATCH", n.at(loc), testsvc.Hdr{key, v8,
			{"Upload-Complete", fmt.Sprintf("?%d", b2i(end == len(data)))}, {"Upload-Offset", strconv.Itoa(off)},
			{"Content-Type", "application/partial-upload"}}, data[off:end])
		switch {
		case r.Status == http.StatusConflict && attempt < 3:
			// Node 0 let go after committing what it had read.
			off, _ = strconv.Atoi(r.Header.Get("Upload-Offset"))
			continue
		case r.Status == http.StatusNoContent:
			off = end
			continue
		}
		break
	}
	if r.Status != http.StatusOK || r.Header.Get("Upload-Complete") != "?1" {
		t.Fatalf("last append on node 2: got %d %s, want 200 with Upload-Complete: ?1", r.Status, r.Body)
	}
	t.Logf("resumed on nodes 1 and 2 in %v", time.Since(start))
	var a struct {
		ID     string `json:"id"`
		SHA256 string `json:"sha256"`
	}
	if err := json.Unmarshal(r.Body, &a); err != nil {
		t.Fatalf("asset %s: %v", r.Body, err)
	}
	got := readyAsset(t, f.nodes[0], a.ID)
	if got.SizeBytes != int64(len(data)) || got.SHA256 != a.SHA256 {
		t.Fatalf("asset on node 0: got %+v, want %d bytes and sha256 %s", got, len(data), a.SHA256)
	}
	wantDownload(t, "asset "+a.ID, got.DownloadURL, data)
	// Node 0's stalled request was answered (409: taken over), not left hanging.
	if _, fin := c.Final("POST"); fin.Status != http.StatusConflict {
		t.Errorf("node 0's creation: got %d %s, want 409 upload_taken_over", fin.Status, fin.Body)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
