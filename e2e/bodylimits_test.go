package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSlowDripPatchFreesLease: a PATCH dripping 1 byte a second is cut
// off by the minimum body rate with 408 body_too_slow, and
// frees its upload's lease: a new PATCH on the same upload is accepted at
// once (no 423). The first 9000 bytes go at once: fasthttp reads up to
// 8 KiB of a body before the handler runs, under its own ReadTimeout.
func TestSlowDripPatchFreesLease(t *testing.T) {
	const window = 2 * time.Second
	s := startServer(t, withArgs("--min-body-rate", "1KiB", "--min-body-rate-window", window.String()))
	const head, size = 9000, 64 << 10
	data := randomBytes(size)
	up := createUpload(t, s, acmeKey, size)

	p := openRawPatch(t, up.Location, acmeKey, 0, size, nil)
	if err := p.Write(data[:head]); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	go func() { _ = p.WriteSlowly(data[head:head+60], 1, time.Second) }()
	r, err := p.Response(30 * time.Second)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("dripping PATCH: no answer after %v: %v", took, err)
	}
	if r.Status != http.StatusRequestTimeout || !strings.Contains(string(r.Body), "body_too_slow") {
		t.Fatalf("dripping PATCH: %d %s, want 408 body_too_slow", r.Status, r.Body)
	}
	if took < window || took > 3*window {
		t.Fatalf("dripping PATCH cut off after %v, want about the window (%v)", took, window)
	}
	p.Close()

	off := headOffset(t, up.Location, acmeKey)
	if off < head || off > head+60 {
		t.Fatalf("offset after the cut: %d, want what was sent (%d..%d)", off, head, head+60)
	}
	if r := patch(t, up.Location, acmeKey, off, data[off:]); r.Status != http.StatusNoContent {
		t.Fatalf("PATCH right after the cut: %d %s, want 204 (the lease must be free)", r.Status, r.Body)
	}
	wantReady(t, s, acmeKey, up.AssetID, data)
}

// TestStalledPatchesWithinBudget: the local sink's buffers come out of
// --max-buffer-memory. 24 PATCHes send 7 MiB each and stall; the first
// ones (no more than cores) take six 1 MiB buffers each, the rest one
// each (they hash inline), 34 MiB on this machine's two cores if they did
// not wait for their share of 16 MiB. The buffer gauge reaches the budget
// and never passes it, and the process's RSS stays within the budget plus
// 64 MiB.
func TestStalledPatchesWithinBudget(t *testing.T) {
	const budget = 16 << 20
	const n, sent, size = 24, 7 << 20, 16 << 20
	s := startServer(t, withArgs("--max-buffer-memory", strconv.Itoa(budget)))
	data := randomBytes(sent)
	for range n {
		up := createUpload(t, s, acmeKey, size)
		p := openRawPatch(t, up.Location, acmeKey, 0, size, nil)
		// Writes block once the server stops reading; the connection
		// closes at cleanup.
		go func() { _ = p.Write(data) }()

	}
	waitMetric(t, s, "roughy_active_uploads", func(v int64) bool { return v == n })
	waitMetric(t, s, "roughy_buffer_bytes_in_use", func(v int64) bool { return v == budget })
	// Let the PATCHes that have buffers fill them all.
	time.Sleep(2 * time.Second)
	if v := metric(t, s, "roughy_buffer_bytes_in_use"); v > budget {
		t.Fatalf("buffer bytes in use %d, budget %d", v, budget)
	}
	rss := rssOf(t, s.PID())
	t.Logf("RSS with %d stalled PATCHes: %d MiB (budget %d MiB)", n, rss>>20, budget>>20)
	if limit := int64(budget + 64<<20); rss > limit {
		t.Fatalf("RSS %d MiB with %d stalled PATCHes, want at most the budget + 64 MiB (%d MiB)", rss>>20, n, limit>>20)
	}
}

// metric reads one unlabelled value from /metrics.
func metric(t *testing.T, s *server, name string) int64 {
	t.Helper()
	r := do(t, req{Method: "GET", URL: s.URL + "/metrics"})
	// The Prometheus text format writes large values with an exponent
	// (1.048576e+06).
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(r.Body)
	if m == nil {
		t.Fatalf("/metrics has no %s", name)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return int64(v)
}

// waitMetric polls /metrics for up to 20 s until ok(value of name).
func waitMetric(t *testing.T, s *server, name string, ok func(int64) bool) {
	t.Helper()
	var v int64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if v = metric(t, s, name); ok(v) {
			return
		}
	}
	t.Fatalf("%s stayed at %d", name, v)
}

// rssOf returns a process's resident set size (Linux /proc).
func rssOf(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if kb, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			v, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status: %v", pid, sc.Err())
	return 0
}

// onSmallDisk runs the server with its data dir on a tmpfs of size bytes,
// mounted in a mount namespace of its own (unshare -m; needs root or user
// namespaces), so the test can fill the disk without touching the host's.
// The test is skipped where that is not allowed.
func onSmallDisk(t *testing.T, size int64) serverOpt {
	t.Helper()
	probe := t.TempDir()
	if out, err := exec.Command("unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs \"$1\"", "sh", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs in a mount namespace: %v %s", err, out)
	}
	wrapper := writeTemp(t, "small-disk.sh", []byte(fmt.Sprintf(`#!/bin/sh
# $DATA_DIR becomes a %d-byte tmpfs seen only by this process.
exec unshare -m sh -c 'mount -t tmpfs -o size=%d tmpfs "$1" && shift && exec "$@"' sh "$DATA_DIR" %q "$@"
`, size, size, roughyBin)))
	if err := os.Chmod(wrapper, 0o755); err != nil {
		t.Fatal(err)
	}
	return func(s *server) {
		s.bin = wrapper
		if s.DataDir == "" {
			s.DataDir = t.TempDir()
		}
		s.env = append(s.env, "DATA_DIR="+s.DataDir)
	}
}

// TestFullDisk507 fills the data dir's disk: /readyz
// fails once free space is below --min-free-space; the PATCH that hits the
// full disk gets 507 storage_full, not a 503 "retry later"; the offset
// stays at what was stored and the embedded store stays consistent: HEAD,
// the asset and DELETE work, and once the bytes are freed a new upload
// completes.
func TestFullDisk507(t *testing.T) {
	const disk = 40 << 20
	s := startServer(t, onSmallDisk(t, disk), withArgs("--min-free-space", "24MiB", "--max-buffer-memory", "64MiB"))
	ready := func() int { return do(t, req{Method: "GET", URL: s.URL + "/readyz"}).Status }
	if st := ready(); st != http.StatusOK {
		t.Fatalf("readyz on an empty disk: %d, want 200", st)
	}
	const chunk = 20 << 20
	data := randomBytes(3 * chunk)
	up := createUpload(t, s, acmeKey, int64(len(data)))
	if r := patch(t, up.Location, acmeKey, 0, data[:chunk]); r.Status != http.StatusNoContent {
		t.Fatalf("first PATCH: %d %s, want 204", r.Status, r.Body)
	}
	if st := ready(); st != http.StatusServiceUnavailable {
		t.Fatalf("readyz with about %d MiB free: %d, want 503 (below --min-free-space)", (disk-chunk)>>20, st)
	}
	r := patch(t, up.Location, acmeKey, chunk, data[chunk:2*chunk])
	if r.Status != http.StatusInsufficientStorage || !strings.Contains(string(r.Body), "storage_full") {
		t.Fatalf("PATCH past the free space: %d %s, want 507 storage_full", r.Status, r.Body)
	}
	if off := headOffset(t, up.Location, acmeKey); off != chunk {
		t.Fatalf("offset after the 507: %d, want %d (what was stored)", off, chunk)
	}
	if st, a := getAsset(t, s, acmeKey, up.AssetID); st != http.StatusOK || a.State != "uploading" {
		t.Fatalf("asset after the 507: %d %+v, want 200 uploading", st, a)
	}
	if rep := do(t, req{Method: "DELETE", URL: up.Location, Key: acmeKey}); rep.Status != http.StatusNoContent {
		t.Fatalf("DELETE on a full disk: %d %s, want 204", rep.Status, rep.Body)
	}
	if st := ready(); st != http.StatusOK {
		t.Fatalf("readyz after DELETE freed the bytes: %d, want 200", st)
	}
	small := data[:1<<20]
	up2 := createUpload(t, s, acmeKey, int64(len(small)))
	if r := patch(t, up2.Location, acmeKey, 0, small); r.Status != http.StatusNoContent {
		t.Fatalf("PATCH after the disk was freed: %d %s, want 204", r.Status, r.Body)
	}
	wantReady(t, s, acmeKey, up2.AssetID, small)
}
