package tusclient

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"testing"
	"time"
)

// startTusd runs the real tusd binary on a loopback port, or skips.
func startTusd(t *testing.T) (endpoint, dir string) {
	t.Helper()
	bin, err := exec.LookPath("tusd")
	if err != nil {
		bin = "/root/go/bin/tusd"
		if _, err := os.Stat(bin); err != nil {
			t.Skip("tusd not installed (go install github.com/tus/tusd/v2/cmd/tusd@v2.9.1)")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir = t.TempDir()
	cmd := exec.Command(bin, "-host", "127.0.0.1", "-port", fmt.Sprint(port), "-upload-dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	endpoint = fmt.Sprintf("http://127.0.0.1:%d/files/", port)
	for range 100 {
		if resp, err := http.Get(endpoint); err == nil {
			resp.Body.Close()
			return endpoint, dir
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("tusd did not start")
	return "", ""
}

// TestUploadAgainstTusd uploads src[base:] in 1 MiB PATCHes, once from
// memory and once from a file (the sendfile path), and checks what tusd
// stored.
func TestUploadAgainstTusd(t *testing.T) {
	endpoint, dir := startTusd(t)
	src := make([]byte, 5<<20+123)
	rand.Read(src)
	file := filepath.Join(t.TempDir(), "src.bin")
	if err := os.WriteFile(file, src, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for name, r := range map[string]interface {
		ReadAt([]byte, int64) (int, error)
	}{"memory": bytes.NewReader(src), "file": f} {
		t.Run(name, func(t *testing.T) { uploadToTusd(t, endpoint, dir, src, r) })
	}
}

func uploadToTusd(t *testing.T, endpoint, dir string, src []byte, r interface {
	ReadAt([]byte, int64) (int, error)
}) {
	c := &Client{Endpoint: endpoint, ChunkSize: 1 << 20, Metadata: [][2]string{{"filename", "x.bin"}}}
	const base = 1000
	res, err := c.Upload(t.Context(), r, base, int64(len(src))-base)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(res.Patches), 5; got != want {
		t.Errorf("patches: got %d, want %d", got, want)
	}
	off, length, err := c.Head(t.Context(), res.Location)
	if err != nil {
		t.Fatal(err)
	}
	if off != res.Size || length != res.Size {
		t.Errorf("HEAD offset, length: got %d, %d, want %d", off, length, res.Size)
	}
	stored, err := os.ReadFile(filepath.Join(dir, path.Base(res.Location)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored, src[base:]) {
		t.Errorf("stored bytes differ from src[%d:] (got %d bytes)", base, len(stored))
	}
}

func TestPatchWrongOffsetFails(t *testing.T) {
	endpoint, _ := startTusd(t)
	c := &Client{Endpoint: endpoint, ChunkSize: 10}
	cr, err := c.Create(t.Context(), 100)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Patch(t.Context(), cr.URL, bytes.NewReader(make([]byte, 100)), 50, 10); err == nil {
		t.Error("PATCH at offset 50 of an empty upload: got nil error, want 409")
	}
}

func TestEncodeMetadata(t *testing.T) {
	got := EncodeMetadata(SortedMetadata(map[string]string{"type": "video", "filename": "a b.mp4"}))
	if want := "filename YSBiLm1wNA==,type dmlkZW8="; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	got = EncodeMetadata([][2]string{{"type", "video"}, {"content_type", ""}, {"filename", "a b.mp4"}})
	if want := "type dmlkZW8=,filename YSBiLm1wNA=="; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
