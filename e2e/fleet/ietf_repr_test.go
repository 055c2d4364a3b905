package fleet

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestIETFReprDigestS3: in S3 mode, the append that completes an upload
// with a wrong Repr-Digest uploads its parts and tail but commits none of
// them (400, the offset unchanged); the same append with the right digest,
// on another node, completes the upload from the committed tail, with
// fresh part numbers, into the right object.
func TestIETFReprDigestS3(t *testing.T) {
	f := startFleet(t, 3)
	data := make([]byte, 13<<20+77)
	for i := range data {
		data[i] = byte(i*13 + i>>9)
	}
	key := [2]string{"Authorization", "Bearer " + fleetKey}
	v8 := [2]string{"Upload-Draft-Interop-Version", "8"}
	digest := func(b []byte) string {
		sum := sha256.Sum256(b)
		return "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
	}

	half := 6<<20 + 5 // a part and a tail
	_, r := testsvc.DraftRoundTrip(t, "POST", f.nodes[0].URL+tusPath, testsvc.Hdr{key, v8, {"Upload-Complete", "?0"},
		{"Content-Type", "video/mp4"}, {"Upload-Length", strconv.Itoa(len(data))}}, data[:half])
	loc := r.Header.Get("Location")
	if r.Status != http.StatusCreated || loc == "" {
		t.Fatalf("creation on node 0: got %d %s, want 201 with Location", r.Status, r.Body)
	}
	last := func(n *node, repr string) testsvc.DraftReply {
		_, r := testsvc.DraftRoundTrip(t, "PATCH", n.at(loc), testsvc.Hdr{key, v8, {"Upload-Complete", "?1"},
			{"Upload-Offset", strconv.Itoa(half)}, {"Content-Type", "application/partial-upload"}, {"Repr-Digest", repr}}, data[half:])
		return r
	}

	r = last(f.nodes[1], digest(data[1:]))
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), `"repr_digest_mismatch"`) ||
		r.Header.Get("Upload-Offset") != strconv.Itoa(half) {
		t.Fatalf("wrong Repr-Digest on node 1: got %d %v %s, want 400 repr_digest_mismatch at offset %d", r.Status, r.Header, r.Body, half)
	}
	_, h := testsvc.DraftRoundTrip(t, "HEAD", f.nodes[2].at(loc), testsvc.Hdr{key, v8}, nil)
	if h.Status != http.StatusNoContent || h.Header.Get("Upload-Offset") != strconv.Itoa(half) || h.Header.Get("Upload-Complete") != "?0" {
		t.Fatalf("HEAD on node 2: got %d %v, want 204 at offset %d, incomplete", h.Status, h.Header, half)
	}

	r = last(f.nodes[2], digest(data))
	if r.Status != http.StatusOK || r.Header.Get("Upload-Complete") != "?1" {
		t.Fatalf("right Repr-Digest on node 2: got %d %s, want 200 with Upload-Complete: ?1", r.Status, r.Body)
	}
	var a struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(r.Body, &a); err != nil {
		t.Fatalf("asset %s: %v", r.Body, err)
	}
	got := readyAsset(t, f.nodes[0], a.ID)
	sum := sha256.Sum256(data)
	if want := hex.EncodeToString(sum[:]); got.SizeBytes != int64(len(data)) || got.SHA256 != want {
		t.Fatalf("asset: got %+v, want %d bytes and sha256 %s", got, len(data), want)
	}
	wantDownload(t, "asset "+a.ID, got.DownloadURL, data)
}
