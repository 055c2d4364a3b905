package main

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

const (
	keyA = "rk_live_loadtestloadtestloadtestloada001"
	keyB = "rk_live_loadtestloadtestloadtestloadb002"
)

// The binary is built once, by the first test that needs it.
var (
	buildOnce    sync.Once
	roughyBin    string
	buildErr     error
	buildCleanup = func() {}
)

func TestMain(m *testing.M) {
	code := m.Run()
	buildCleanup()
	os.Exit(code)
}

// startRoughy builds (once) and starts the real binary (embedded default)
// with two accounts.
func startRoughy(t *testing.T) *testsvc.Roughy {
	t.Helper()
	buildOnce.Do(func() { roughyBin, buildCleanup, buildErr = testsvc.BuildRoughy() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	r := &testsvc.Roughy{Bin: roughyBin, Args: []string{"--data-dir", t.TempDir(), "--probe-workers", "1"},
		Env: []string{"ROUGHY_API_KEYS=a=" + keyA + ",b=" + keyB}}
	r.Start(t)
	t.Cleanup(func() {
		r.Stop(15 * time.Second)
		if t.Failed() {
			t.Logf("roughy log:\n%s", r.Log.Tail(6000))
		}
	})
	return r
}

// TestRunAgainstRoughy runs the generator against the real binary: 8
// uploads of 3 MiB in 1 MiB PATCHes, 4 at a time brought up over a ramp
// at 20 uploads/s, two accounts, a third of the PATCHes cut off and
// resumed, every asset's SHA-256 checked, then deleted.
func TestRunAgainstRoughy(t *testing.T) {
	r := startRoughy(t)
	c := config{
		urls: []string{r.URL + "/api/v1/assets/upload-resumable"}, keys: []string{keyA, keyB},
		workers: 4, uploads: 8, size: 3 << 20, chunk: 1 << 20, retries: 3, timeout: time.Minute,
		mediaType: "video", delete: true, rate: 20, ramp: 200 * time.Millisecond,
		abortRate: 0.34, seed: 1, verify: true, verifyTimeout: 20 * time.Second, verifyDownload: true,
	}
	var out strings.Builder
	if err := run(t.Context(), c, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Logf("summary:\n%s", out.String())
	sum := out.String()
	m := regexp.MustCompile(`uploads: +(\d+) ok, (\d+) failed, (\d+) corrupt, \d+ resumes, (\d+) injected aborts`).FindStringSubmatch(sum)
	if m == nil {
		t.Fatalf("summary has no uploads line:\n%s", sum)
	}
	ok, _ := strconv.Atoi(m[1])
	aborts, _ := strconv.Atoi(m[4])
	if ok != 8 || m[2] != "0" || m[3] != "0" {
		t.Errorf("uploads: got %s ok, %s failed, %s corrupt; want 8, 0, 0", m[1], m[2], m[3])
	}
	if aborts == 0 {
		t.Errorf("injected aborts: got 0 at rate 0.34 over 24 PATCHes")
	}
	for _, want := range []string{"verified:       8 assets", "POST    latency", "PATCH   latency", "HEAD    latency", "DELETE  latency", "GET     latency"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q", want)
		}
	}
}
