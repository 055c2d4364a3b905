package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/roughy/ingest/bench/internal/benchproc"
	"github.com/roughy/ingest/internal/testsvc"
)

// seaweed is a real S3 server for -mode seaweed: `weed server -s3` on
// free loopback ports with its data under the work dir (the tests' flags,
// testsvc.SeaweedArgs). With no identities configured it accepts any
// signature and anonymous requests, so this harness talks plain HTTP to
// it. Unlike the fake S3 it stores every byte: the disk must hold the
// whole upload.
type seaweed struct {
	proc     *benchproc.Server
	ports    []int
	endpoint string // http://127.0.0.1:PORT
	bucket   string
}

// seaweedBinary finds weed: -weed, then $(go env GOPATH)/bin/weed (where
// scripts/setup-deps.sh builds it), then PATH.
func seaweedBinary(flagged string) (string, error) {
	if flagged != "" {
		return flagged, nil
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(string(bytes.TrimSpace(out)), "bin", "weed")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("weed")
	if err != nil {
		return "", errors.New("bigupload: weed not found (scripts/setup-deps.sh builds it, or pass -weed)")
	}
	return p, nil
}

// startSeaweed starts weed storing under dir, waits until a bucket takes
// writes and returns it; stop it with stop.
func startSeaweed(ctx context.Context, bin, dir, logPath string, vacuum bool) (*seaweed, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bigupload: %w", err)
	}
	s := &seaweed{bucket: "bigupload"}
	for range testsvc.SeaweedPorts {
		p, err := benchproc.FreePort()
		if err != nil {
			return nil, err
		}
		s.ports = append(s.ports, p)
	}
	s.endpoint = "http://127.0.0.1:" + strconv.Itoa(s.ports[0])
	args := testsvc.SeaweedArgs(dir, s.ports)
	if vacuum {
		// Volumes of 1 GiB instead of weed's 30 GB: a vacuum copies a
		// volume's live needles to a new file, so small volumes are
		// reclaimed sooner and need little room to compact.
		args = append(args, "-master.garbageThreshold=0.05", "-master.vacuumIntervalSeconds=30", "-master.volumeSizeLimitMB=1024")
	}
	proc, err := benchproc.Start("weed", bin, args, testsvc.SeaweedEnv, logPath)
	if err != nil {
		return nil, err
	}
	s.proc = proc
	if err := proc.WaitHTTP(ctx, http.MethodGet, s.endpoint+"/", 60*time.Second); err != nil {
		s.stop()
		return nil, err
	}
	if err := s.do(ctx, http.MethodPut, "/"+s.bucket, nil); err != nil {
		s.stop()
		return nil, fmt.Errorf("bigupload: create bucket: %w", err)
	}
	// S3 answers before the volume server has registered with the master;
	// a write fails until it has.
	var last error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if last = s.do(ctx, http.MethodPut, "/"+s.bucket+"/probe", []byte("probe")); last == nil {
			return s, s.do(ctx, http.MethodDelete, "/"+s.bucket+"/probe", nil)
		}
	}
	s.stop()
	return nil, fmt.Errorf("bigupload: seaweedfs takes no write: %w", last)
}

func (s *seaweed) stop() {
	s.proc.Stop(15 * time.Second)
	testsvc.RemoveSeaweedSockets(s.ports)
}

// do sends an anonymous request and fails unless it answers 2xx.
func (s *seaweed) do(ctx context.Context, method, path string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, method, s.endpoint+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, msg)
	}
	return nil
}

// download is what reading the stored object back found.
type download struct {
	size      int64
	equal     bool  // every byte equals the generated stream
	firstDiff int64 // offset of the first byte that differs (-1: none)
	elapsed   time.Duration
}

// download GETs key and compares it, byte for byte as it streams in, with
// the generator's stream of seed: the source is never on disk (it would
// not fit beside the stored copy).
func (s *seaweed) download(ctx context.Context, key string, seed uint64, want int64) (download, error) {
	d := download{firstDiff: -1}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.endpoint+"/"+s.bucket+"/"+key, nil)
	if err != nil {
		return d, err
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return d, fmt.Errorf("bigupload: GET %s: %w", key, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return d, fmt.Errorf("bigupload: GET %s: %s: %s", key, resp.Status, msg)
	}
	gen := newGenerator(seed)
	const bufSize = 8 << 20
	got, exp := make([]byte, bufSize), make([]byte, bufSize)
	for {
		n, rerr := io.ReadFull(resp.Body, got)
		if n > 0 {
			d.compare(gen, got[:n], exp, want)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return d, fmt.Errorf("bigupload: GET %s after %d bytes: %w", key, d.size, rerr)
		}
	}
	d.elapsed = time.Since(start)
	if d.firstDiff < 0 && d.size < want {
		d.firstDiff = d.size // shorter than sent
	}
	d.equal = d.firstDiff < 0 && d.size == want
	return d, nil
}

// compare checks got, the next bytes of the download, against the
// generator's stream (exp is scratch space as long as got), records the
// first difference if none was found yet, and counts got.
func (d *download) compare(gen *generator, got, exp []byte, want int64) {
	n := int64(len(got))
	m := n
	if left := want - d.size; left < m {
		m = max(left, 0)
	}
	gen.fill(exp[:m])
	if d.firstDiff < 0 {
		if i := firstMismatch(got[:m], exp[:m]); i >= 0 {
			d.firstDiff = d.size + int64(i)
		} else if m < n {
			d.firstDiff = d.size + m // longer than sent
		}
	}
	d.size += n
}

func firstMismatch(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

// openUploads counts the multipart uploads in progress in the bucket.
func (s *seaweed) openUploads(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.endpoint+"/"+s.bucket+"?uploads=", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("ListMultipartUploads: %s: %.300s", resp.Status, b)
	}
	return len(uploadRE.FindAll(b, -1)), nil
}

var uploadRE = regexp.MustCompile(`<Upload>`)
