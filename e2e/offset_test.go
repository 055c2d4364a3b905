package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// Offset retrieval a client can trust: the offset HEAD reports is accepted
// by the next append, however the previous request on the upload ended.
// Each test cuts a body with a TCP reset after most of it was sent and
// HEADs at once, as iOS URLSession and the TUS clients do after a lost
// connection: the server is then still reading (or committing) the dead
// request, and HEAD must answer after it settled.

// offsetRounds is how many cut-HEAD-append rounds each test runs.
const offsetRounds = 20

// offsetBody is each round's upload: large enough that the server lags
// behind the client (socket buffers, commits) when the cut comes, small
// enough for 20 rounds on a 2-core box.
const offsetBody = 24 << 20

// reset aborts conn with a TCP RST (SO_LINGER 0), as a dead client's
// kernel or a lost network path does: the server's pending read fails.
func reset(t *testing.T, conn net.Conn) {
	t.Helper()
	if tc, ok := conn.(*net.TCPConn); ok {
		if err := tc.SetLinger(0); err != nil {
			t.Fatalf("SetLinger(0): %v", err)
		}
	}
	conn.Close()
}

// cutAt is where a round cuts its body: after 60-90% of n.
func cutAt(n int) int { return n*6/10 + rand.IntN(n*3/10) }

// TestHeadOffsetAcceptedAfterReset (TUS): a PATCH of the whole file cut by
// a reset after 60-90%, HEAD at once, then a PATCH of the rest at HEAD's
// offset: 204 in every round, and the upload is the source.
func TestHeadOffsetAcceptedAfterReset(t *testing.T) {
	s := startServer(t)
	for round := range offsetRounds {
		data := randomBytes(offsetBody)
		up := createUpload(t, s, acmeKey, int64(len(data)))
		p := openRawPatch(t, up.Location, acmeKey, 0, int64(len(data)), nil)
		cut := cutAt(len(data))
		if err := p.Write(data[:cut]); err != nil {
			t.Fatalf("round %d: send %d bytes: %v", round, cut, err)
		}
		reset(t, p.conn)
		off := headOffset(t, up.Location, acmeKey)
		if rep := patch(t, up.Location, acmeKey, off, data[off:]); rep.Status != http.StatusNoContent {
			t.Fatalf("round %d: cut after %d, HEAD said %d: PATCH there got %d %s (Upload-Offset %s), want 204",
				round, cut, off, rep.Status, rep.Body, rep.Header.Get("Upload-Offset"))
		}
		wantReady(t, s, acmeKey, up.AssetID, data)
	}
}

// TestIETFHeadOffsetAcceptedAfterReset: the same through the draft, as
// URLSession sends it: the whole file in the creating POST (its 104 names
// the upload), cut by a reset; offset retrieval at once, then an append
// of the rest that ends the upload at the offset retrieved.
func TestIETFHeadOffsetAcceptedAfterReset(t *testing.T) {
	s := startServer(t)
	for _, v := range []int{3, 8} {
		t.Run(fmt.Sprintf("interop%d", v), func(t *testing.T) {
			for round := range offsetRounds {
				data := randomBytes(offsetBody)
				loc, cut := draftCut(t, s.Endpoint(), v, data)
				off := draftHead(t, loc, v)
				if r := draftFinish(t, loc, v, off, data); r.Status != http.StatusOK {
					t.Fatalf("round %d: cut after %d, offset retrieval said %d: append there got %d %s (Upload-Offset %s), want 200",
						round, cut, off, r.Status, r.Body, r.Header.Get("Upload-Offset"))
				} else {
					wantAssetReply(t, fmt.Sprintf("round %d", round), r, data)
				}
			}
		})
	}
}

// TestIETFHeadOffsetAcrossSegments: as URLSession sends a large file: 100
// MiB in the creating request, which the server writes as 64 MiB
// segments, cut after 60-90% (in either segment or at the boundary);
// offset retrieval at once, the rest appended there. Fewer rounds than
// the tests above: each moves 100 MiB through a 2-core box.
func TestIETFHeadOffsetAcrossSegments(t *testing.T) {
	s := startServer(t)
	for round := range 4 {
		data := randomBytes(100 << 20)
		loc, cut := draftCut(t, s.Endpoint(), 8, data)
		off := draftHead(t, loc, 8)
		if r := draftFinish(t, loc, 8, off, data); r.Status != http.StatusOK {
			t.Fatalf("round %d: cut after %d, offset retrieval said %d: append there got %d %s (Upload-Offset %s), want 200",
				round, cut, off, r.Status, r.Body, r.Header.Get("Upload-Offset"))
		} else {
			wantAssetReply(t, fmt.Sprintf("round %d", round), r, data)
		}
	}
}

// draftCut sends data in one creating POST at interop v and resets the
// connection after 60-90% of it; it returns the upload's URL (from the
// 104) and how much was sent.
func draftCut(t *testing.T, ep string, v int, data []byte) (string, int) {
	t.Helper()
	c := testsvc.DialDraft(t, ep)
	h := hdr{auth(acmeKey), interop(v), {"Content-Type", "video/mp4"}, {"Content-Length", fmt.Sprint(len(data))}}
	if v <= 3 {
		h = append(h, [2]string{"Upload-Incomplete", "?0"})
	} else {
		h = append(h, [2]string{"Upload-Complete", "?1"})
	}
	c.Start("POST", ep, h)
	// The server creates the upload once the body starts (as URLSession
	// sends it: headers and body at once).
	c.Body(data[:1<<20])
	i := c.Next("POST")
	loc := i.Header.Get("Location")
	if i.Status != 104 || loc == "" {
		t.Fatalf("creation: got %d %v, want a 104 with Location", i.Status, i.Header)
	}
	cut := cutAt(len(data))
	_ = c.Conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Conn.Write(data[1<<20 : cut]); err != nil {
		t.Fatalf("send %d bytes: %v", cut, err)
	}
	reset(t, c.Conn)
	return loc, cut
}

// draftHead is offset retrieval at interop v: the offset, failing unless
// 204 and incomplete.
func draftHead(t *testing.T, loc string, v int) int64 {
	t.Helper()
	_, h := testsvc.DraftRoundTrip(t, "HEAD", loc, hdr{auth(acmeKey), interop(v)}, nil)
	var off int64 = -1
	if _, err := fmt.Sscan(h.Header.Get("Upload-Offset"), &off); h.Status != http.StatusNoContent || err != nil {
		t.Fatalf("offset retrieval: got %d, Upload-Offset %q, want 204 with an offset", h.Status, h.Header.Get("Upload-Offset"))
	}
	return off
}

// draftFinish appends data[off:] at off at interop v, ending the upload.
func draftFinish(t *testing.T, loc string, v int, off int64, data []byte) testsvc.DraftReply {
	t.Helper()
	h := hdr{auth(acmeKey), interop(v), {"Upload-Offset", fmt.Sprint(off)}}
	switch {
	case v >= 6:
		h = append(h, [2]string{"Upload-Complete", "?1"}, [2]string{"Content-Type", "application/partial-upload"})
	case v >= 5:
		h = append(h, [2]string{"Upload-Complete", "?1"})
	}
	_, r := testsvc.DraftRoundTrip(t, "PATCH", loc, h, data[off:])
	return r
}

// TestStrictClientKillAndResume: a client that gives up on the first 409
// uploads one file through 20 kills (its connection reset in the middle
// of a PATCH, after 1-3 MiB) each followed at once by a resume, and
// completes it.
func TestStrictClientKillAndResume(t *testing.T) {
	s := startServer(t)
	data := randomBytes(64 << 20)
	up := createUpload(t, s, acmeKey, int64(len(data)))
	for cycle := range offsetRounds {
		c := testsvc.NewStrictTUS(t, up.Location, acmeKey, 4<<20, int64(1<<20+rand.IntN(2<<20)))
		if err := c.Resume(data); errors.Is(err, testsvc.ErrStrict409) || !c.Killed() {
			t.Fatalf("cycle %d: %v (killed %v), want the client killed mid-PATCH", cycle, err, c.Killed())
		}
	}
	if err := testsvc.NewStrictTUS(t, up.Location, acmeKey, 4<<20, 0).Resume(data); err != nil {
		t.Fatalf("last resume: %v", err)
	}
	wantReady(t, s, acmeKey, up.AssetID, data)
}

// TestAssetBytesReceived: GET of an uploading asset tells how many bytes
// are stored so far (bytes_received), so progress needs no HEAD; a ready
// asset tells its size.
func TestAssetBytesReceived(t *testing.T) {
	s := startServer(t)
	data := randomBytes(3 << 20)
	up := createUpload(t, s, acmeKey, int64(len(data)))
	received := func() *int64 {
		rep := do(t, req{Method: "GET", URL: s.URL + "/api/v1/assets/" + up.AssetID, Key: acmeKey, NoTus: true})
		var a struct {
			BytesReceived *int64 `json:"bytes_received"`
		}
		if err := json.Unmarshal(rep.Body, &a); rep.Status != http.StatusOK || err != nil {
			t.Fatalf("GET asset: %d %s", rep.Status, rep.Body)
		}
		return a.BytesReceived
	}
	if got := received(); got == nil || *got != 0 {
		t.Fatalf("bytes_received of a new upload: got %v, want 0", got)
	}
	if rep := patch(t, up.Location, acmeKey, 0, data[:1<<20]); rep.Status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", rep.Status, rep.Body)
	}
	if got := received(); got == nil || *got != 1<<20 {
		t.Fatalf("bytes_received after 1 MiB: got %v, want %d", got, 1<<20)
	}
	if rep := patch(t, up.Location, acmeKey, 1<<20, data[1<<20:]); rep.Status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", rep.Status, rep.Body)
	}
	if got := received(); got == nil || *got != int64(len(data)) {
		t.Fatalf("bytes_received when ready: got %v, want %d", got, len(data))
	}
	wantReady(t, s, acmeKey, up.AssetID, data)
}
