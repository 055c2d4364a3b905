package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// killedUpload is one upload of TestKillManyUploads as its client saw it.
type killedUpload struct {
	data    []byte
	session string // "" until the POST's 201 was seen
	asset   string
	acked   int64 // the offset of the last 204 seen
	sent    int64 // the end of the last PATCH sent
}

// TestKillManyUploads: 64 clients each run small uploads (a POST and two
// PATCHes) back to back, so that the server's writes of many uploads share
// transactions and syncs; the server is SIGKILLed at a random moment and
// restarted on the same data dir. Every upload whose 201 a client saw
// exists, with at least the offset of its last 204; completed, it holds
// exactly its source's bytes (SHA-256 and download).
func TestKillManyUploads(t *testing.T) {
	const clients, size = 64, 256 << 10
	s := startServer(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 18))

	var (
		mu      sync.Mutex
		uploads []*killedUpload
		done    atomic.Int64 // uploads completed (last PATCH answered 204)
	)
	endpoint := s.Endpoint()
	// run makes uploads until a request fails (the server died).
	run := func() {
		for {
			u := &killedUpload{data: randomBytes(size)}
			mu.Lock()
			uploads = append(uploads, u)
			mu.Unlock()
			if !createKilled(t, endpoint, u) {
				return
			}
			for _, end := range []int64{size / 2, size} {
				off := u.acked
				u.sent = end
				rep, err := tryDo(t.Context(), req{Method: "PATCH", URL: endpoint + "/" + u.session, Key: acmeKey,
					Body: bytes.NewReader(u.data[off:end]), Header: map[string]string{
						"Upload-Offset": fmt.Sprint(off), "Content-Type": "application/offset+octet-stream",
						"Content-Length": fmt.Sprint(end - off),
					}})
				if err != nil {
					return // the server died
				}
				if rep.Status != http.StatusNoContent {
					t.Errorf("upload %s: PATCH at %d: got %d %s", u.session, off, rep.Status, rep.Body)
					return
				}
				u.acked = end
			}
			done.Add(1)
		}
	}
	var wg sync.WaitGroup
	for range clients {
		wg.Go(run)
	}
	// Kill once some uploads completed, at a random moment after: the
	// clients are always mid-request.
	for done.Load() < clients/2 {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
	s.Kill()
	wg.Wait()
	s.Restart()

	var created, partial int
	for _, u := range uploads {
		if u.session == "" {
			continue // the POST's answer was not seen: the upload may or may not exist
		}
		created++
		loc := s.Endpoint() + "/" + u.session
		off := headOffset(t, loc, acmeKey)
		if off < u.acked || off > u.sent {
			t.Fatalf("upload %s: offset after restart %d, want in [%d (acknowledged), %d (sent)]", u.session, off, u.acked, u.sent)
		}
		if off < size {
			partial++
			if rep := patch(t, loc, acmeKey, off, u.data[off:]); rep.Status != http.StatusNoContent {
				t.Fatalf("upload %s: resume PATCH at %d: got %d %s", u.session, off, rep.Status, rep.Body)
			}
		}
		wantReady(t, s, acmeKey, u.asset, u.data)
	}
	t.Logf("%d uploads created before the kill (%d complete when it came), %d resumed after it", created, done.Load(), partial)
}

// createKilled POSTs u's upload; false when no 201 came (an answer other
// than a failed connection is an error of t).
func createKilled(t *testing.T, endpoint string, u *killedUpload) bool {
	rep, err := tryDo(t.Context(), req{Method: "POST", URL: endpoint, Key: acmeKey, Header: map[string]string{
		"Upload-Metadata": videoMeta("kill.bin"), "Upload-Length": fmt.Sprint(len(u.data)),
	}})
	if err != nil {
		return false
	}
	var body struct {
		SessionID string `json:"session_id"`
		Asset     struct {
			ID string `json:"id"`
		} `json:"asset"`
	}
	if rep.Status != http.StatusCreated || json.Unmarshal(rep.Body, &body) != nil || body.SessionID == "" {
		t.Errorf("POST: got %d %s, want 201 with a session id", rep.Status, rep.Body)
		return false
	}
	u.session, u.asset = body.SessionID, body.Asset.ID
	return true
}
