package main

import (
	"crypto/sha256"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{{"2GiB", 2 << 30}, {"512MiB", 512 << 20}, {"64M", 64 << 20}, {"1000", 1000}} {
		got, err := parseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q): got %d, %v, want %d", tc.in, got, err, tc.want)
		}
	}
	if _, err := parseSize("12XB"); err == nil {
		t.Error("parseSize(12XB): got nil error")
	}
}

func TestReadProcSelf(t *testing.T) {
	before, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn ~200 ms of CPU so that utime must move (USER_HZ = 100).
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline); {
		sha256.Sum256(buf)
	}
	after, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after.cpu <= before.cpu {
		t.Errorf("cpu: got %s after %s, want it to grow", after.cpu, before.cpu)
	}
	if after.hwm < 1<<20 || after.hwm < after.rss {
		t.Errorf("VmHWM %d, VmRSS %d: want HWM ≥ 1 MiB and ≥ RSS", after.hwm, after.rss)
	}
}

func TestScrapeCommitQuantiles(t *testing.T) {
	body := `# TYPE roughy_commit_seconds histogram
roughy_commit_seconds_bucket{backend="redis",le="0.001"} 0
roughy_commit_seconds_bucket{backend="redis",le="0.002"} 50
roughy_commit_seconds_bucket{backend="redis",le="0.004"} 99
roughy_commit_seconds_bucket{backend="redis",le="+Inf"} 100
roughy_commit_seconds_sum{backend="redis"} 0.2
roughy_commit_seconds_count{backend="redis"} 100
roughy_patch_seconds_bucket{le="1"} 7
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) }))
	defer srv.Close()
	h, name := scrapeCommit(t.Context(), srv.URL)
	if h == nil || name != "roughy_commit_seconds" {
		t.Fatalf("got %v %q, want the commit histogram", h, name)
	}
	if got := h.quantile(0.5); math.Abs(got-0.002) > 1e-9 {
		t.Errorf("p50: got %g, want 0.002", got)
	}
	if got := h.quantile(0.99); math.Abs(got-0.004) > 1e-9 {
		t.Errorf("p99: got %g, want 0.004", got)
	}
}

func TestMedian(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("odd: got %g, want 2", got)
	}
	if got := median([]float64{4, 1, 2, 3}); got != 2.5 {
		t.Errorf("even: got %g, want 2.5", got)
	}
}
