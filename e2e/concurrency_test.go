package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"
)

// slowReader yields data in steps with a pause between them, so that two
// requests really overlap on the server.
type slowReader struct {
	data  []byte
	step  int
	pause time.Duration
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(r.pause)
	n := copy(p[:min(len(p), r.step)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestRacingPatches sends two PATCHes of one upload at the same offset at
// the same time, with different bytes: at most one is acknowledged (the
// newer takes the older over, and may then find the offset moved: both
// 409), and the stored object is one body's committed prefix and what
// follows it, never a mix.
func TestRacingPatches(t *testing.T) {
	s := startServer(t)
	const size = 4 << 20
	for round := range 3 {
		t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
			a, b := randomBytes(size), randomBytes(size)
			up := createUpload(t, s, acmeKey, size)
			var wg sync.WaitGroup
			reps := make([]reply, 2)
			errs := make([]error, 2)
			start := make(chan struct{})
			for i, data := range [][]byte{a, b} {
				wg.Go(func() {
					<-start
					ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
					defer cancel()
					reps[i], errs[i] = tryDo(ctx, req{Method: "PATCH", URL: up.Location, Key: acmeKey,
						Body: &slowReader{data: data, step: 256 << 10, pause: 15 * time.Millisecond},
						Header: map[string]string{
							"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
							"Content-Length": fmt.Sprint(size),
						}})
				})
			}
			close(start)
			wg.Wait()
			ok := 0
			for i := range 2 {
				switch {
				case errs[i] != nil:
					t.Logf("PATCH %d: transport error %v", i, errs[i])
				case reps[i].Status == http.StatusNoContent:
					ok++
				default:
					t.Logf("PATCH %d: %d %s", i, reps[i].Status, reps[i].Body)
					if reps[i].Status != http.StatusLocked && reps[i].Status != http.StatusConflict {
						t.Errorf("losing PATCH %d: got %d, want 423 or 409", i, reps[i].Status)
					}
				}
			}
			if ok > 1 {
				t.Fatalf("acknowledged PATCHes: got %d, want at most 1", ok)
			}
			want := a
			if reps[1].Status == http.StatusNoContent {
				want = b
			}
			if ok == 0 {
				// Neither won: the committed prefix is one body's; finish
				// with a's rest and accept either prefix.
				off := headOffset(t, up.Location, acmeKey)
				if rep := patch(t, up.Location, acmeKey, off, a[off:]); rep.Status != http.StatusNoContent {
					t.Fatalf("finishing PATCH at %d: %d %s", off, rep.Status, rep.Body)
				}
				_, as := getAsset(t, s, acmeKey, up.AssetID)
				got := download(t, as.DownloadURL)
				if !bytes.Equal(got, a) && !bytes.Equal(got, append(bytes.Clone(b[:off]), a[off:]...)) {
					t.Fatalf("stored bytes are not one body's %d committed bytes plus the rest: a mix", off)
				}
				return
			}
			_, as := getAsset(t, s, acmeKey, up.AssetID)
			got := download(t, as.DownloadURL)
			if !bytes.Equal(got, want) {
				switch {
				case bytes.Equal(got, a), bytes.Equal(got, b):
					t.Fatalf("stored bytes are the other PATCH's, not the acknowledged one's")
				default:
					t.Fatalf("stored bytes (%d, sha256 %s) are neither PATCH's: a mix", len(got), sha256Hex(got))
				}
			}
			wantReady(t, s, acmeKey, up.AssetID, want)
		})
	}
}

// TestKillMidPatch SIGKILLs the server while a large PATCH streams in,
// restarts it on the same data dir, and resumes: HEAD never claims more
// than was sent, and the final object is byte-identical.
func TestKillMidPatch(t *testing.T) {
	s := startServer(t)
	data := randomBytes(48 << 20)
	up := createUpload(t, s, acmeKey, int64(len(data)))
	// A first PATCH that completes, so the restart has committed bytes.
	const first = 5 << 20
	if rep := patch(t, up.Location, acmeKey, 0, data[:first]); rep.Status != 204 {
		t.Fatalf("first PATCH: got %d %s", rep.Status, rep.Body)
	}
	p := openRawPatch(t, up.Location, acmeKey, first, int64(len(data)-first), nil)
	// About 20 MiB at a steady pace, then the server dies.
	if err := p.WriteSlowly(data[first:first+20<<20], 1<<20, 20*time.Millisecond); err != nil {
		t.Fatalf("streaming PATCH: %v", err)
	}
	sent := int64(first) + p.sent
	s.Kill()
	p.Close()

	s.Restart()
	loc := s.Endpoint() + "/" + up.SessionID
	off := headOffset(t, loc, acmeKey)
	t.Logf("sent %d bytes before SIGKILL; HEAD offset after restart %d", sent, off)
	if off < first || off > sent {
		t.Fatalf("offset after restart: got %d, want between %d (acknowledged) and %d (sent)", off, first, sent)
	}
	for off < int64(len(data)) {
		end := min(off+16<<20, int64(len(data)))
		rep := patchRetry(t, loc, acmeKey, off, data[off:end])
		if rep.Status != 204 || rep.Header.Get("Upload-Offset") != fmt.Sprint(end) {
			t.Fatalf("resume PATCH at %d: got %d %s offset %q", off, rep.Status, rep.Body, rep.Header.Get("Upload-Offset"))
		}
		off = end
	}
	wantReady(t, s, acmeKey, up.AssetID, data)
	// And once more after a clean restart: nothing acknowledged was lost.
	s.Stop()
	s.Restart()
	wantReady(t, s, acmeKey, up.AssetID, data)
}

// TestDisconnectMidPatch drops the client connection mid-PATCH: HEAD gives
// an offset no larger than what was sent, and the upload resumes.
func TestDisconnectMidPatch(t *testing.T) {
	s := startServer(t)
	data := randomBytes(24 << 20)
	up := createUpload(t, s, acmeKey, int64(len(data)))
	p := openRawPatch(t, up.Location, acmeKey, 0, int64(len(data)), nil)
	if err := p.WriteSlowly(data[:10<<20], 1<<20, 10*time.Millisecond); err != nil {
		t.Fatalf("streaming PATCH: %v", err)
	}
	sent := p.sent
	p.Close()
	// The server notices the drop; its lease must not block the resume
	// for long (tus-js-client retries after 0, 3, 5 s).
	deadline := time.Now().Add(15 * time.Second)
	var off int64
	for {
		off = headOffset(t, up.Location, acmeKey)
		if off > sent {
			t.Fatalf("offset after disconnect: got %d, more than the %d bytes sent", off, sent)
		}
		rep := patch(t, up.Location, acmeKey, off, data[off:])
		if rep.Status == 204 {
			break
		}
		if rep.Status != http.StatusLocked && rep.Status != http.StatusConflict || time.Now().After(deadline) {
			t.Fatalf("resume PATCH at %d: got %d %s", off, rep.Status, rep.Body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("sent %d, resumed from %d", sent, off)
	wantReady(t, s, acmeKey, up.AssetID, data)
}

// patchRetry is patch, retried on 423 for up to 15 s, as tus-js-client
// does: a lease left by a killed process may hold the upload a moment.
func patchRetry(t *testing.T, loc, key string, offset int64, data []byte) reply {
	t.Helper()
	start := time.Now()
	for locked := 0; ; locked++ {
		rep := patch(t, loc, key, offset, data)
		if rep.Status != http.StatusLocked || time.Since(start) > 15*time.Second {
			if locked > 0 {
				t.Logf("PATCH at %d: %d × 423 over %v before %d", offset, locked, time.Since(start).Round(time.Millisecond), rep.Status)
			}
			return rep
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestKillLoop SIGKILLs the server at random moments while a client
// PATCHes steadily, restarts it on the same data dir each time, and checks
// that no acknowledged byte is ever lost and no unsent byte claimed; the
// final object is byte-identical.
func TestKillLoop(t *testing.T) {
	s := startServer(t)
	data := randomBytes(48 << 20)
	up := createUpload(t, s, acmeKey, int64(len(data)))
	const chunk, kills = 4 << 20, 6
	// sendFrom PATCHes chunks from off until the server dies or the upload
	// is done, and returns the last offset acknowledged with a 204. The
	// body is paced (at most ~32 KiB a millisecond) so that the upload
	// spans the kills however fast the machine is.
	sendFrom := func(loc string, off int64) int64 {
		for off < int64(len(data)) {
			end := min(off+chunk, int64(len(data)))
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			rep, err := tryDo(ctx, req{Method: "PATCH", URL: loc, Key: acmeKey,
				Body: &slowReader{data: data[off:end], step: 32 << 10, pause: time.Millisecond},
				Header: map[string]string{
					"Upload-Offset": fmt.Sprint(off), "Content-Type": "application/offset+octet-stream",
					"Content-Length": fmt.Sprint(end - off),
				}})
			cancel()
			if err == nil && rep.Status == http.StatusLocked {
				time.Sleep(100 * time.Millisecond) // a lease of the killed process
				continue
			}
			if err != nil || rep.Status != http.StatusNoContent {
				return off
			}
			off = end
		}
		return off
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var acked int64
	done := 0
	for kill := range kills {
		loc := s.Endpoint() + "/" + up.SessionID
		ackedCh := make(chan int64, 1)
		go func() { ackedCh <- sendFrom(loc, acked) }()
		select {
		case acked = <-ackedCh: // finished before the kill
		case <-time.After(time.Duration(50+rng.IntN(350)) * time.Millisecond):
		}
		if acked == int64(len(data)) {
			break
		}
		s.Kill()
		done++
		acked = <-ackedCh
		s.Restart()
		off := headOffset(t, s.Endpoint()+"/"+up.SessionID, acmeKey)
		// Bytes of the chunk in flight may have become durable too.
		if off < acked || off > min(acked+chunk, int64(len(data))) {
			t.Fatalf("kill %d: offset after restart %d, want in [%d (acknowledged), %d (sent)]", kill, off, acked, acked+chunk)
		}
		t.Logf("kill %d: acknowledged %d, durable %d", kill, acked, off)
		acked = off
	}
	if done < 3 {
		t.Fatalf("only %d kills happened during the upload, want at least 3", done)
	}
	if acked = sendFrom(s.Endpoint()+"/"+up.SessionID, acked); acked != int64(len(data)) {
		t.Fatalf("final PATCHes stopped at %d of %d", acked, len(data))
	}
	wantReady(t, s, acmeKey, up.AssetID, data)
}
