package fleet

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Takeover end to end: the newest request on an upload wins
// within a second or three, on any node, whatever became of the last one.

// stallPatch opens a raw connection to n, sends a PATCH at offset 0 of loc
// declaring length bytes, and sends only first: then the client goes
// silent without closing (a phone that lost its network). The connection
// is returned open.
func stallPatch(t testing.TB, n *node, loc string, length int, first []byte) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(n.URL, "http://"), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	path := n.at(loc)[len(n.URL):]
	fmt.Fprintf(c, "PATCH %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nTus-Resumable: 1.0.0\r\n"+
		"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: %d\r\n\r\n",
		path, strings.TrimPrefix(n.URL, "http://"), fleetKey, length)
	if _, err := c.Write(first); err != nil {
		t.Fatalf("write body: %v", err)
	}
	return c
}

// resume does what a TUS client does after losing a request: HEAD, then
// PATCH the next chunk from the offset HEAD gave; on 409 (the old request
// committed more while letting go) HEAD again. It returns once a PATCH is
// acknowledged, with the new offset.
func resume(t testing.TB, url string, src []byte, chunk int) int64 {
	t.Helper()
	for range 10 {
		status, off := head(t, url)
		if status != http.StatusOK {
			t.Fatalf("HEAD %s: %d", url, status)
		}
		end := min(off+int64(chunk), int64(len(src)))
		a, err := patch(t.Context(), url, off, src[off:end])
		switch {
		case err != nil:
			t.Fatalf("resume PATCH at %d: %v", off, err)
		case a.Status == http.StatusNoContent:
			return end
		case a.Status != http.StatusConflict && a.Status != http.StatusLocked:
			t.Fatalf("resume PATCH at %d: %d %s", off, a.Status, a.Body)
		}
	}
	t.Fatalf("resume of %s: no PATCH accepted in 10 tries", url)
	return 0
}

// finish PATCHes the rest of src from off and checks the object.
func finish(t testing.TB, n *node, loc, id string, src []byte) {
	t.Helper()
	for {
		status, off := head(t, n.at(loc))
		if status != http.StatusOK {
			t.Fatalf("HEAD: %d", status)
		}
		if off == int64(len(src)) {
			break
		}
		end := min(off+8<<20, int64(len(src)))
		if a, err := patch(t.Context(), n.at(loc), off, src[off:end]); err != nil || a.Status != http.StatusNoContent {
			t.Fatalf("PATCH at %d: %d %s %v", off, a.Status, a.Body, err)
		}
	}
	sum := sha256.Sum256(src)
	a := readyAsset(t, n, id)
	if a.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("asset sha256 %s, want %x", a.SHA256, sum)
	}
	wantDownload(t, "asset "+id, a.DownloadURL, src)
}

// TestFleetSilentClientLoss: a client stops sending mid-PATCH without
// closing; the same client on a new connection resumes (HEAD + PATCH, and
// HEAD + PATCH again after a 409) and is accepted within 1 s, on the same
// node and on another node, with the default 60 s idle timeout and 10 s
// lease.
func TestFleetSilentClientLoss(t *testing.T) {
	f := startFleet(t, 2, "--lease-ttl", "10s")
	const length = 24 << 20
	for _, tc := range []struct {
		name   string
		resume *node
	}{{"same node", f.nodes[0]}, {"other node", f.nodes[1]}} {
		t.Run(tc.name, func(t *testing.T) {
			src := randomBytes(length)
			loc, id := create(t, f.nodes[0], length)
			c := stallPatch(t, f.nodes[0], loc, length, src[:5<<20])
			time.Sleep(300 * time.Millisecond) // the node reads what was sent

			start := time.Now()
			resume(t, tc.resume.at(loc), src, 1<<20)
			took := time.Since(start)
			if took > time.Second {
				t.Errorf("resume after a silent client loss accepted after %v, want within 1s", took)
			}
			t.Logf("resume accepted after %v", took)
			// The old request was answered (409) and its connection closed.
			if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("old request's answer: %v", err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusConflict {
				t.Errorf("old request: %d, want 409", res.StatusCode)
			}
			finish(t, tc.resume, loc, id, src)
		})
	}
}

// TestFleetKillResume: the node holding a PATCH is killed (SIGKILL); the
// upload is resumed on another node and accepted within 3 s of the kill,
// with a 10 s lease (so it is not the lease running out). 5 kills.
func TestFleetKillResume(t *testing.T) {
	f := startFleet(t, 3, "--lease-ttl", "10s")
	const length = 32 << 20
	for i := range 5 {
		victim, other := f.nodes[i%3], f.nodes[(i+1)%3]
		src := randomBytes(length)
		loc, id := create(t, other, length)
		took := killAndResume(t, victim, other, loc, src)
		t.Logf("kill %d: resume accepted %v after the kill", i, took)
		if took > 3*time.Second {
			t.Errorf("kill %d: resume accepted %v after the kill, want within 3s", i, took)
		}
		victim.start()
		finish(t, other, loc, id, src)
	}
}

// killAndResume streams src to loc on victim, SIGKILLs victim after 0.3-1 s
// (random), resumes on other as a TUS client does, and answers how long
// after the kill the first resume PATCH was accepted. victim stays down.
func killAndResume(t testing.TB, victim, other *node, loc string, src []byte) time.Duration {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The victim is killed under it: it fails, as it should.
		_, _ = send(t.Context(), "PATCH", victim.at(loc), map[string]string{
			"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
		}, &throttled{data: src, rate: 16 << 20})
	}()
	time.Sleep(time.Duration(300+mrand.IntN(700)) * time.Millisecond)
	victim.kill()
	killed := time.Now()
	<-done
	resume(t, other.at(loc), src, 1<<20)
	return time.Since(killed)
}

// TestFleetDeleteDuringPatch: DELETE on one node while a PATCH streams on
// another: the PATCH ends with 404 (not a retryable status), the DELETE
// answers 204 at once, and S3 holds nothing of the upload afterwards.
func TestFleetDeleteDuringPatch(t *testing.T) {
	f := startFleet(t, 2, "--lease-ttl", "10s")
	const length = 48 << 20
	src := randomBytes(length)
	loc, id := create(t, f.nodes[0], length)
	done := make(chan answer, 1)
	go func() {
		a, err := send(t.Context(), "PATCH", f.nodes[0].at(loc), map[string]string{
			"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream",
		}, &throttled{data: src, rate: 16 << 20})
		if err != nil {
			a.Status = -1
		}
		done <- a
	}()
	// Let some parts reach S3 first.
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Progress from the assets API: a HEAD would take the upload
		// over from the PATCH.
		if off := bytesReceived(t, f.nodes[1], id); off > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no part committed within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if keys, err := f.s3.MultipartKeys("uploads/" + id); err != nil || len(keys) == 0 {
		t.Fatalf("multipart uploads of the upload before DELETE: %v, %v; want one", keys, err)
	}
	start := time.Now()
	if a := mustSend(t, "DELETE", f.nodes[1].at(loc), nil, nil); a.Status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", a.Status, a.Body)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("DELETE took %v", took)
	}
	select {
	case a := <-done:
		if a.Status != http.StatusNotFound {
			t.Errorf("PATCH whose upload was deleted: %d %s, want 404", a.Status, a.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the PATCH did not end within 10s of the DELETE")
	}
	if status, _ := head(t, f.nodes[0].at(loc)); status != http.StatusNotFound {
		t.Errorf("HEAD after DELETE: %d, want 404", status)
	}
	f.requireNothingStored(t, id)
}

// requireNothingStored fails unless S3 holds no object and no multipart
// upload of asset id.
func (f *fleet) requireNothingStored(t *testing.T, id string) {
	t.Helper()
	objects, err := f.s3.Keys("uploads/" + id)
	if err != nil {
		t.Fatalf("list objects: %v", err)
	}
	uploads, err := f.s3.MultipartKeys("uploads/" + id)
	if err != nil {
		t.Fatalf("list multipart uploads: %v", err)
	}
	if len(objects) > 0 || len(uploads) > 0 {
		t.Fatalf("after DELETE, S3 holds objects %v and multipart uploads %v of the upload", objects, uploads)
	}
}
