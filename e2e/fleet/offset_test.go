package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// Offset retrieval a client can trust, across the fleet: a body cut by a
// TCP reset on one node, HEAD at once on another, and an append at the
// offset HEAD answered there is accepted, every time. The node that held
// the dead request is asked to let go (Redis release request) and HEAD
// answers once its durable prefix is committed.

// fleetOffsetRounds is how many cut-HEAD-append rounds each test runs;
// fleetOffsetBody each round's upload (S3 parts commit as they come, so
// a cut lands with parts in flight).
const (
	fleetOffsetRounds = 20
	fleetOffsetBody   = 16 << 20
)

// reset aborts conn with a TCP RST (SO_LINGER 0).
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

// TestHeadOffsetAcceptedOnAnotherNode (TUS): a PATCH of the whole file on
// node 0 cut by a reset after 60-90%; HEAD at once on node 1, then the
// rest PATCHed there at HEAD's offset: 204 in every round, and the object
// in S3 is the source.
func TestHeadOffsetAcceptedOnAnotherNode(t *testing.T) {
	f := startFleet(t, 2)
	a, b := f.nodes[0], f.nodes[1]
	for round := range fleetOffsetRounds {
		data := randomBytes(fleetOffsetBody)
		loc, assetID := create(t, a, int64(len(data)))
		u, conn := testsvc.DialURL(t, loc)
		head := fmt.Sprintf("PATCH %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nTus-Resumable: 1.0.0\r\n"+
			"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: %d\r\n\r\n",
			u.RequestURI(), u.Host, fleetKey, len(data))
		cut := cutAt(len(data))
		_ = conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Write(append([]byte(head), data[:cut]...)); err != nil {
			t.Fatalf("round %d: send %d bytes: %v", round, cut, err)
		}
		reset(t, conn)
		status, off := headAt(t, b.at(loc))
		if status != http.StatusOK {
			t.Fatalf("round %d: HEAD on node 1: %d", round, status)
		}
		rep, err := patch(t.Context(), b.at(loc), off, data[off:])
		if err != nil || rep.Status != http.StatusNoContent {
			t.Fatalf("round %d: cut after %d, HEAD on node 1 said %d: PATCH there got %v %d %s, want 204",
				round, cut, off, err, rep.Status, rep.Body)
		}
		wantReady(t, b, assetID, data)
	}
}

// headAt is head without failing on a transport error's zero offset.
func headAt(t *testing.T, url string) (int, int64) {
	t.Helper()
	a := mustSend(t, "HEAD", url, nil, nil)
	off, err := strconv.ParseInt(a.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		t.Fatalf("HEAD %s: Upload-Offset %q", url, a.Header.Get("Upload-Offset"))
	}
	return a.Status, off
}

// TestIETFHeadOffsetAcceptedOnAnotherNode: the same through the draft at
// interop 3 and 8, as URLSession sends it: the whole file in the creating
// POST on node 0 (its 104 names the upload), cut by a reset; offset
// retrieval at once on node 1 and an append of the rest there that ends
// the upload.
func TestIETFHeadOffsetAcceptedOnAnotherNode(t *testing.T) {
	f := startFleet(t, 2)
	for _, v := range []int{3, 8} {
		t.Run(fmt.Sprintf("interop%d", v), func(t *testing.T) {
			draftRounds(t, f, v, fleetOffsetRounds, fleetOffsetBody)
		})
	}
	// Past 64 MiB the server writes the request in segments, each under
	// its own lease: the cut lands in either, or between them.
	t.Run("interop8-segments", func(t *testing.T) { draftRounds(t, f, 8, 3, 96<<20) })
}

// draftRounds runs rounds of: a creating POST at interop v with size bytes
// on node 0 cut by a reset, offset retrieval on node 1, the rest appended
// there, the asset downloaded.
func draftRounds(t *testing.T, f *fleet, v, rounds, size int) {
	a, b := f.nodes[0], f.nodes[1]
	key := [2]string{"Authorization", "Bearer " + fleetKey}
	iv := [2]string{"Upload-Draft-Interop-Version", strconv.Itoa(v)}
	for round := range rounds {
		data := randomBytes(size)
		c := testsvc.DialDraft(t, a.URL)
		h := testsvc.Hdr{key, iv, {"Content-Type", "video/mp4"}, {"Content-Length", strconv.Itoa(len(data))}}
		if v <= 3 {
			h = append(h, [2]string{"Upload-Incomplete", "?0"})
		} else {
			h = append(h, [2]string{"Upload-Complete", "?1"})
		}
		c.Start("POST", a.URL+tusPath, h)
		c.Body(data[:1<<20]) // the server creates the upload once the body starts
		i := c.Next("POST")
		loc := i.Header.Get("Location")
		if i.Status != 104 || loc == "" {
			t.Fatalf("round %d: creation: got %d %v, want a 104 with Location", round, i.Status, i.Header)
		}
		cut := cutAt(len(data))
		_ = c.Conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Conn.Write(data[1<<20 : cut]); err != nil {
			t.Fatalf("round %d: send %d bytes: %v", round, cut, err)
		}
		reset(t, c.Conn)

		_, r := testsvc.DraftRoundTrip(t, "HEAD", b.at(loc), testsvc.Hdr{key, iv}, nil)
		off, err := strconv.Atoi(r.Header.Get("Upload-Offset"))
		if r.Status != http.StatusNoContent || err != nil {
			t.Fatalf("round %d: offset retrieval on node 1: %d, Upload-Offset %q", round, r.Status, r.Header.Get("Upload-Offset"))
		}
		ph := testsvc.Hdr{key, iv, {"Upload-Offset", strconv.Itoa(off)}}
		if v >= 6 {
			ph = append(ph, [2]string{"Upload-Complete", "?1"}, [2]string{"Content-Type", "application/partial-upload"})
		}
		_, r = testsvc.DraftRoundTrip(t, "PATCH", b.at(loc), ph, data[off:])
		if r.Status != http.StatusOK {
			t.Fatalf("round %d: cut after %d, offset retrieval on node 1 said %d: append there got %d %s, want 200",
				round, cut, off, r.Status, r.Body)
		}
		var got struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(r.Body, &got); err != nil || got.ID == "" {
			t.Fatalf("round %d: append's asset %s: %v", round, r.Body, err)
		}
		wantReady(t, b, got.ID, data)
	}
}

// TestStrictClientKillAndResumeAcrossNodes: a client that gives up on the
// first 409 (as github.com/eventials/go-tus does) uploads one file
// through 20 kills (its connection reset mid-PATCH, after 1-3 MiB), each
// followed at once by a resume on the other node, and completes it.
func TestStrictClientKillAndResumeAcrossNodes(t *testing.T) {
	f := startFleet(t, 2)
	data := randomBytes(48 << 20)
	loc, assetID := create(t, f.nodes[0], int64(len(data)))
	for cycle := range fleetOffsetRounds {
		n := f.nodes[cycle%2]
		c := testsvc.NewStrictTUS(t, n.at(loc), fleetKey, 4<<20, int64(1<<20+rand.IntN(2<<20)))
		if err := c.Resume(data); errors.Is(err, testsvc.ErrStrict409) || !c.Killed() {
			t.Fatalf("cycle %d on node %d: %v (killed %v), want the client killed mid-PATCH", cycle, cycle%2, err, c.Killed())
		}
	}
	if err := testsvc.NewStrictTUS(t, f.nodes[0].at(loc), fleetKey, 4<<20, 0).Resume(data); err != nil {
		t.Fatalf("last resume: %v", err)
	}
	wantReady(t, f.nodes[1], assetID, data)
}

// bytesReceived is the asset's bytes_received on n: the upload's progress,
// read without taking the upload over (as HEAD does).
func bytesReceived(t testing.TB, n *node, assetID string) int64 {
	t.Helper()
	a := mustSend(t, "GET", n.URL+"/api/v1/assets/"+assetID, nil, nil)
	var got struct {
		BytesReceived *int64 `json:"bytes_received"`
	}
	if err := json.Unmarshal(a.Body, &got); a.Status != http.StatusOK || err != nil || got.BytesReceived == nil {
		t.Fatalf("GET asset %s on %s: %d %s, want bytes_received", assetID, n.URL, a.Status, a.Body)
	}
	return *got.BytesReceived
}
