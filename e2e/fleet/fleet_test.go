package fleet

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestFleetRotatingUpload sends the POST, every PATCH and every HEAD of
// one upload to a different node in turn; the object in S3 is the source,
// byte for byte.
func TestFleetRotatingUpload(t *testing.T) {
	rotatingUpload(t, startFleet(t, 3))
}

// TestFleetClusterRotatingUpload is TestFleetRotatingUpload with the
// sessions on a three-master Redis Cluster.
func TestFleetClusterRotatingUpload(t *testing.T) {
	rotatingUpload(t, startClusterFleet(t, 3))
}

func rotatingUpload(t *testing.T, f *fleet) {
	src := randomBytes(20<<20 + 12345)
	loc, id := create(t, f.nodes[0], int64(len(src)))
	chunks := []int{6 << 20, 5<<20 + 1, 3 << 20, 1234, len(src)} // the last one takes the rest
	var off int64
	for i, size := range chunks {
		end := min(off+int64(size), int64(len(src)))
		n := f.nodes[(i+1)%3]
		a, err := patch(t.Context(), n.at(loc), off, src[off:end])
		if err != nil || a.Status != http.StatusNoContent {
			t.Fatalf("PATCH %d on %s at %d: got %d %s, %v; want 204", i, n.URL, off, a.Status, a.Body, err)
		}
		off = end
		h := f.nodes[(i+2)%3]
		if status, got := head(t, h.at(loc)); status != http.StatusOK || got != off {
			t.Fatalf("HEAD on %s after PATCH %d: got %d offset %d, want 200 offset %d", h.URL, i, status, got, off)
		}
		if off == int64(len(src)) {
			break
		}
	}
	a := readyAsset(t, f.nodes[1], id)
	sum := sha256.Sum256(src)
	if a.SHA256 != hex.EncodeToString(sum[:]) || a.SizeBytes != int64(len(src)) {
		t.Fatalf("asset: got sha256 %s size %d, want %x %d", a.SHA256, a.SizeBytes, sum, len(src))
	}
	wantDownload(t, "rotating upload", a.DownloadURL, src)
}

// TestFleetNonMedia completes a non-media upload (zeros, which ffprobe
// refuses; random bytes sometimes pass as MP3): its probe job ends in the
// dead-letter stream and duration_seconds stays null.
func TestFleetNonMedia(t *testing.T) { nonMedia(t, startFleet(t, 2)) }

// TestFleetClusterNonMedia is TestFleetNonMedia on Redis Cluster, where the
// completion's probe job is added before the commit and verified.
func TestFleetClusterNonMedia(t *testing.T) { nonMedia(t, startClusterFleet(t, 2)) }

func nonMedia(t *testing.T, f *fleet) {
	src := make([]byte, 1<<20)
	loc, id := create(t, f.nodes[0], int64(len(src)))
	for i, n := range f.nodes {
		half := len(src) / 2
		if a, err := patch(t.Context(), n.at(loc), int64(i*half), src[i*half:(i+1)*half]); err != nil || a.Status != http.StatusNoContent {
			t.Fatalf("PATCH %d: got %d %s, %v", i, a.Status, a.Body, err)
		}
	}
	st := f.store(t)
	deadline := time.Now().Add(15 * time.Second)
	for {
		dead, err := st.DeadProbes(t.Context())
		if err != nil {
			t.Fatalf("DeadProbes: %v", err)
		}
		if i := slices.IndexFunc(dead, func(d sessionstore.DeadProbe) bool { return d.AssetID == id }); i >= 0 {
			t.Logf("dead letter: %+v", dead[i])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("asset %s not in the dead-letter stream after 15s: %+v", id, dead)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if a := readyAsset(t, f.nodes[1], id); a.DurationSeconds != nil {
		t.Fatalf("duration_seconds of non-media: got %q, want null", *a.DurationSeconds)
	}
	wantReady(t, f.nodes[0], id, src)
}

// TestFleetRedisRestart stops Redis in the middle of an upload: requests
// get 503 with Retry-After, and once Redis is back the upload resumes on
// another node from the committed offset.
func TestFleetRedisRestart(t *testing.T) {
	f := startFleet(t, 2)
	src := randomBytes(12 << 20)
	loc, id := create(t, f.nodes[0], int64(len(src)))
	const half = 6 << 20
	if a, err := patch(t.Context(), f.nodes[0].at(loc), 0, src[:half]); err != nil || a.Status != http.StatusNoContent {
		t.Fatalf("first PATCH: got %d %s, %v", a.Status, a.Body, err)
	}
	f.redis.Stop()
	for i, n := range f.nodes {
		for _, method := range []string{"HEAD", "PATCH"} {
			var a answer
			var err error
			if method == "HEAD" {
				a, err = send(ctxTimeout(t, 20*time.Second), "HEAD", n.at(loc), nil, nil)
			} else {
				a, err = patch(ctxTimeout(t, 20*time.Second), n.at(loc), half, src[half:])
			}
			if err != nil {
				t.Logf("%s on node %d during the outage: %v (not acknowledged)", method, i, err)
				continue
			}
			if a.Status != http.StatusServiceUnavailable || a.Header.Get("Retry-After") == "" {
				t.Fatalf("%s on node %d during the outage: got %d (Retry-After %q) %s, want 503 with Retry-After",
					method, i, a.Status, a.Header.Get("Retry-After"), a.Body)
			}
		}
	}
	f.redis.Start()
	var status int
	var off int64
	deadline := time.Now().Add(10 * time.Second)
	for {
		if status, off = head(t, f.nodes[1].at(loc)); status == http.StatusOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if status != http.StatusOK || off != half {
		t.Fatalf("HEAD after Redis is back: got %d offset %d, want 200 offset %d", status, off, half)
	}
	if a, err := patch(t.Context(), f.nodes[1].at(loc), half, src[half:]); err != nil || a.Status != http.StatusNoContent {
		t.Fatalf("PATCH after Redis is back: got %d %s, %v", a.Status, a.Body, err)
	}
	wantReady(t, f.nodes[0], id, src)
}

// TestFleetConcurrentPatch sends two PATCHes of different bytes at the same
// offset to two nodes at once: at most one is acknowledged (the newer may
// take the older over, and then find the offset moved: both 409), and the
// object is one body's committed prefix and what follows it, never a mix.
func TestFleetConcurrentPatch(t *testing.T) {
	f := startFleet(t, 2)
	const first, rest = 6 << 20, 1 << 20
	for round := range 3 {
		loc, id := create(t, f.nodes[0], first+rest)
		bodies := [2][]byte{randomBytes(first), randomBytes(first)}
		var answers [2]answer
		var errs [2]error
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				<-start
				answers[i], errs[i] = patch(t.Context(), f.nodes[i].at(loc), 0, bodies[i])
			})
		}
		close(start)
		wg.Wait()
		// The loser is refused (409, 423) or, when a node answers before it
		// read the body and closes, sees its connection reset: both mean
		// "not acknowledged", which is what a TUS client retries after.
		won := -1
		for i := range 2 {
			switch {
			case errs[i] != nil:
				t.Logf("round %d: PATCH on node %d: %v", round, i, errs[i])
			case answers[i].Status == http.StatusNoContent:
				if won >= 0 {
					t.Fatalf("round %d: both PATCHes at offset 0 got 204", round)
				}
				won = i
			case answers[i].Status == http.StatusConflict, answers[i].Status == http.StatusLocked:
			default:
				t.Fatalf("round %d: PATCH on node %d: got %d %s, want 204, 409 or 423", round, i, answers[i].Status, answers[i].Body)
			}
		}
		t.Logf("round %d: answers %d (%v) and %d (%v)", round, answers[0].Status, errs[0], answers[1].Status, errs[1])
		status, off := head(t, f.nodes[1].at(loc))
		if status != http.StatusOK || (won >= 0 && off != first) {
			t.Fatalf("round %d: HEAD: got %d offset %d (winner %d)", round, status, off, won)
		}
		// Finish with body 0 (or the winner's) from the offset: the object
		// must then be one body's prefix followed by the rest.
		fill := 0
		if won >= 0 {
			fill = won
		}
		tail := randomBytes(rest)
		more := append(bytes.Clone(bodies[fill][off:]), tail...)
		a, err := patch(t.Context(), f.nodes[1].at(loc), off, more)
		if err != nil || a.Status != http.StatusNoContent {
			t.Fatalf("round %d: last PATCH: got %d %s, %v", round, a.Status, a.Body, err)
		}
		got := download(t, readyAsset(t, f.nodes[0], id).DownloadURL)
		ok := false
		for _, b := range bodies {
			want := append(append(bytes.Clone(b[:off]), bodies[fill][off:]...), tail...)
			ok = ok || bytes.Equal(got, want)
		}
		if !ok {
			t.Fatalf("round %d: object is not one body's %d committed bytes plus the rest (%d bytes)", round, off, len(got))
		}
	}
}

// ctxTimeout is a helper for requests that must not hang the test.
func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestFleetKillMidPatch SIGKILLs the node that streams a 48 MiB PATCH at a
// random moment, then resumes the upload on another node the way a TUS
// client does (HEAD, PATCH the rest, retry on 423 on the 0/3/5/10/20 s
// schedule's budget), and checks the object byte for byte. 20 kills (5
// with -short).
func TestFleetKillMidPatch(t *testing.T) {
	kills := 20
	if testing.Short() {
		kills = 5
	}
	f := startFleet(t, 3, "--lease-ttl", "1s")
	src := randomBytes(48 << 20)
	sum := sha256.Sum256(src)
	var worstTakeover time.Duration
	midStream := 0
	for i := range kills {
		victim, other := f.nodes[i%3], f.nodes[(i+1)%3]
		loc, id := create(t, other, int64(len(src)))
		done := make(chan answer, 1)
		go func() {
			a, err := send(t.Context(), "PATCH", victim.at(loc), map[string]string{
				"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
			}, &throttled{data: src, rate: 96 << 20})
			if err != nil {
				a.Status = -1
			}
			done <- a
		}()
		time.Sleep(time.Duration(mrand.Int64N(int64(500 * time.Millisecond))))
		victim.kill()
		killed := time.Now()
		if a := <-done; a.Status != http.StatusNoContent {
			midStream++
		}

		// Resume on another node within the clients' retry budget.
		var took time.Duration
		deadline := killed.Add(38 * time.Second) // 0+3+5+10+20 s
		for {
			if time.Now().After(deadline) {
				t.Fatalf("kill %d: upload not resumed within the retry schedule", i)
			}
			status, off := head(t, other.at(loc))
			if status != http.StatusOK {
				t.Fatalf("kill %d: HEAD: got %d", i, status)
			}
			if off == int64(len(src)) {
				break
			}
			a, err := patch(t.Context(), other.at(loc), off, src[off:])
			if err == nil && a.Status == http.StatusNoContent {
				if took == 0 {
					took = time.Since(killed)
				}
				break
			}
			if err == nil && a.Status != http.StatusLocked && a.Status != http.StatusConflict {
				t.Fatalf("kill %d: resume PATCH at %d: got %d %s", i, off, a.Status, a.Body)
			}
			time.Sleep(250 * time.Millisecond)
		}
		worstTakeover = max(worstTakeover, took)
		victim.start()
		a := readyAsset(t, other, id)
		if a.SHA256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("kill %d: asset sha256 %s, want %x", i, a.SHA256, sum)
		}
		wantDownload(t, fmt.Sprintf("kill %d", i), a.DownloadURL, src)
	}
	t.Logf("%d kills, %d mid-stream; slowest kill-to-upload-complete: %v; zero corrupt objects", kills, midStream, worstTakeover)
}

// pipeBody is a request body the test writes as it goes; Len gives the
// Content-Length.
type pipeBody struct {
	*io.PipeReader
	n int
}

func (b pipeBody) Len() int { return b.n }

// TestFleetStalledNodeCannotCommit freezes (SIGSTOP) a node in the middle
// of a PATCH until its lease expires, lets another node take the upload
// over and commit, then thaws it (SIGCONT): the stalled node's writes must
// not be acknowledged or change the upload.
func TestFleetStalledNodeCannotCommit(t *testing.T) {
	f := startFleet(t, 2, "--lease-ttl", "1s")
	a, b := f.nodes[0], f.nodes[1]
	const length = 24 << 20
	srcA, srcB := randomBytes(length), randomBytes(length)
	loc, id := create(t, b, length)

	pr, pw := io.Pipe()
	done := make(chan answer, 1)
	go func() {
		ans, err := send(t.Context(), "PATCH", a.at(loc), map[string]string{
			"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
		}, pipeBody{pr, length})
		if err != nil {
			ans.Status = -1
			t.Logf("stalled node's PATCH: %v", err)
		}
		done <- ans
	}()
	if _, err := pw.Write(srcA[:12<<20]); err != nil {
		t.Fatalf("write to the PATCH: %v", err)
	}
	// Let the first parts commit, if the node commits parts mid-PATCH.
	deadline := time.Now().Add(5 * time.Second)
	for {
		// Progress from the assets API: a HEAD would take the upload
		// over from the PATCH.
		if off := bytesReceived(t, b, id); off > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Kill(a.pid(), syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP: %v", err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			if err := syscall.Kill(a.pid(), syscall.SIGCONT); err != nil {
				t.Errorf("SIGCONT: %v", err)
			}
		}
	}
	defer thaw()
	time.Sleep(1500 * time.Millisecond) // past the 1 s lease

	_, x := head(t, b.at(loc))
	const step = 6 << 20
	var ans answer
	var err error
	for range 20 { // the lease may need a moment to lapse
		if ans, err = patch(t.Context(), b.at(loc), x, srcB[x:x+step]); err != nil || ans.Status != http.StatusLocked {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil || ans.Status != http.StatusNoContent {
		t.Fatalf("takeover PATCH on the other node at %d: got %d %s, %v; want 204", x, ans.Status, ans.Body, err)
	}
	thaw()
	go func() {
		_, err := pw.Write(srcA[12<<20:])
		pw.CloseWithError(err) // the request ends as the write did
	}()
	var stalled answer
	select {
	case stalled = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the thawed node's PATCH did not end within 30s")
	}
	if stalled.Status == http.StatusNoContent {
		t.Fatalf("the stalled node acknowledged its PATCH after the takeover")
	}
	t.Logf("taken over at offset %d; the thawed node answered %d %s", x, stalled.Status, stalled.Body)
	if _, off := head(t, b.at(loc)); off != x+step {
		t.Fatalf("offset after the thawed node's attempt: got %d, want %d (the takeover's)", off, x+step)
	}
	if ans, err := patch(t.Context(), b.at(loc), x+step, srcB[x+step:]); err != nil || ans.Status != http.StatusNoContent {
		t.Fatalf("last PATCH: got %d %s, %v", ans.Status, ans.Body, err)
	}
	// The object is the stalled node's committed prefix plus the
	// takeover's bytes.
	wantReady(t, b, id, append(bytes.Clone(srcA[:x]), srcB[x:]...))
}

// TestFleetProbeDuration uploads a real MP4 (made by ffmpeg) through two
// nodes, on standalone Redis and on Cluster: duration_seconds appears
// within seconds, probed through a presigned S3 URL by a node's worker.
func TestFleetProbeDuration(t *testing.T) {
	src := makeMP4(t)
	for _, tc := range []struct {
		name  string
		start func(testing.TB, int, ...string) *fleet
	}{{"standalone", startFleet}, {"cluster", startClusterFleet}} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.start(t, 2)
			loc, id := create(t, f.nodes[0], int64(len(src)))
			half := int64(len(src) / 2)
			for i, part := range [][]byte{src[:half], src[half:]} {
				if a, err := patch(t.Context(), f.nodes[i].at(loc), int64(i)*half, part); err != nil || a.Status != http.StatusNoContent {
					t.Fatalf("PATCH %d: got %d %s, %v", i, a.Status, a.Body, err)
				}
			}
			completed := time.Now()
			d := waitDuration(t, f.nodes[1], id, 20*time.Second)
			t.Logf("duration_seconds %q appeared %v after completion", d, time.Since(completed).Round(time.Millisecond))
			wantReady(t, f.nodes[0], id, src)
		})
	}
}

// makeMP4 makes a 3-second MP4 (video and audio) with ffmpeg.
func makeMP4(t *testing.T) []byte {
	t.Helper()
	mp4 := filepath.Join(t.TempDir(), "clip.mp4")
	out, err := exec.CommandContext(t.Context(), "ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=3:size=160x120:rate=10",
		"-f", "lavfi", "-i", "sine=duration=3", "-shortest", "-pix_fmt", "yuv420p", mp4).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg (apt-get install -y ffmpeg): %v\n%s", err, out)
	}
	src, err := os.ReadFile(mp4)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// waitDuration GETs the asset on n until duration_seconds is set (at most
// limit) and checks it is about 3 s.
func waitDuration(t *testing.T, n *node, id string, limit time.Duration) string {
	t.Helper()
	start := time.Now()
	for {
		a := readyAsset(t, n, id)
		if a.DurationSeconds != nil {
			if d, err := strconv.ParseFloat(*a.DurationSeconds, 64); err != nil || d < 2.9 || d > 3.1 {
				t.Fatalf("duration_seconds: got %q, want about 3", *a.DurationSeconds)
			}
			return *a.DurationSeconds
		}
		if time.Since(start) > limit {
			t.Fatalf("duration_seconds still null after %v", limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFleetProbeWorkerKilled kills a node while its worker is probing (its
// ffprobe hangs): a worker of another node, started afterwards, reclaims
// the job once it was idle for that worker's reclaim limit (probe timeout
// + 30 s) and fills duration_seconds.
func TestFleetProbeWorkerKilled(t *testing.T) {
	src := makeMP4(t)
	f := startFleet(t, 0)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "probing.pid")
	hang := filepath.Join(dir, "ffprobe-hang")
	script := "#!/bin/sh\necho $$ > " + pidFile + "\nexec sleep 300\n"
	if err := os.WriteFile(hang, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL) // it may be gone already
			}
		}
	})
	a := f.startNode("--ffprobe", hang, "--probe-timeout", "5m")
	loc, id := create(t, a, int64(len(src)))
	if ans, err := patch(t.Context(), a.at(loc), 0, src); err != nil || ans.Status != http.StatusNoContent {
		t.Fatalf("PATCH: got %d %s, %v", ans.Status, ans.Body, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(pidFile); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first node's worker did not start probing within 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.kill()
	killed := time.Now()
	b := f.startNode("--probe-timeout", "2s")
	d := waitDuration(t, b, id, 60*time.Second)
	t.Logf("duration_seconds %q filled by the other node's worker %v after the kill", d, time.Since(killed).Round(time.Millisecond))
	wantReady(t, b, id, src)
}
