package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// k6Summary is the part of the shim's --summary-json the tests read.
type k6Summary struct {
	Metrics map[string]struct {
		Count  float64 `json:"count"`
		Rate   float64 `json:"rate"`
		Passes float64 `json:"passes"`
		Fails  float64 `json:"fails"`
	} `json:"metrics"`
	Thresholds map[string]map[string]struct {
		OK    bool    `json:"ok"`
		Value float64 `json:"value"`
	} `json:"thresholds"`
}

// runK6 runs script under the Node shim of k6 (k6/shim/run.mjs) with env
// as -e settings and returns the summary, the output and the exit code.
func runK6(t *testing.T, script string, env ...string) (k6Summary, string, int) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not installed: %v", err)
	}
	summary := filepath.Join(t.TempDir(), "summary.json")
	args := []string{filepath.Join("k6", "shim", "run.mjs"), "--summary-json", summary}
	for _, e := range env {
		args = append(args, "-e", e)
	}
	cmd := exec.CommandContext(t.Context(), "node", append(args, script)...)
	cmd.Env = testsvc.CleanEnv()
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, out)
	}
	var s k6Summary
	b, err := os.ReadFile(summary)
	if err != nil {
		t.Fatalf("%s wrote no summary (exit %d): %v\n%s", script, code, err, out)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("summary of %s: %v", script, err)
	}
	return s, string(out), code
}

// TestK6Scripts runs every k6 script of loadtest/k6 under the shim
// against the real binary: 3 VUs, 6 iterations of a 3 MiB upload in 1 MiB
// PATCHes, keys of two accounts. Each must pass its thresholds with every
// check true and every iteration run.
func TestK6Scripts(t *testing.T) {
	r := startRoughy(t)
	scripts, err := filepath.Glob(filepath.Join("k6", "*.js"))
	if err != nil || len(scripts) < 2 {
		t.Fatalf("k6 scripts: got %v, %v; want upload.js and resume.js", scripts, err)
	}
	for _, script := range scripts {
		t.Run(filepath.Base(script), func(t *testing.T) {
			s, out, code := runK6(t, script, "ROUGHY_URL="+r.URL, "ROUGHY_KEYS="+keyA+","+keyB,
				"VUS=3", "ITERATIONS=6", "UPLOAD_SIZE=3MiB", "CHUNK_SIZE=1MiB")
			t.Logf("%s", out)
			if code != 0 {
				t.Fatalf("exit %d, want 0", code)
			}
			m := s.Metrics
			if m["iterations"].Count != 6 {
				t.Errorf("iterations: got %v, want 6", m["iterations"].Count)
			}
			if m["checks"].Fails != 0 || m["checks"].Passes == 0 {
				t.Errorf("checks: got %v passed, %v failed; want all passed", m["checks"].Passes, m["checks"].Fails)
			}
			if m["tus_upload_errors"].Passes != 0 || m["tus_upload_errors"].Fails != 6 {
				t.Errorf("tus_upload_errors: got %v failed of %v, want 0 of 6", m["tus_upload_errors"].Passes, m["tus_upload_errors"].Passes+m["tus_upload_errors"].Fails)
			}
			if m["tus_bytes_acked"].Count != 6*3<<20 {
				t.Errorf("tus_bytes_acked: got %v, want %d", m["tus_bytes_acked"].Count, 6*3<<20)
			}
			if m["tus_patch_duration"].Count == 0 {
				t.Error("tus_patch_duration has no samples")
			}
			if strings.HasPrefix(filepath.Base(script), "resume") && m["tus_aborts"].Count != 6 {
				t.Errorf("tus_aborts: got %v, want one per iteration (6)", m["tus_aborts"].Count)
			}
		})
	}
}

// TestK6ThresholdsCrossed: a threshold no server can meet (p95 PATCH
// under 1 µs), and checks that fail (a key no account has), make the shim
// exit 99 and say which thresholds were crossed, as k6 does.
func TestK6ThresholdsCrossed(t *testing.T) {
	r := startRoughy(t)
	for _, tc := range []struct {
		name, metric string
		env          []string
	}{
		{"p95", "tus_patch_duration", []string{"ROUGHY_KEY=" + keyA, "P95_PATCH_MS=0.001"}},
		{"checks", "checks", []string{"ROUGHY_KEY=rk_live_nosuchkeynosuchkeynosuchkeynosuch1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append([]string{"ROUGHY_URL=" + r.URL, "VUS=1", "ITERATIONS=2", "UPLOAD_SIZE=2MiB", "CHUNK_SIZE=1MiB"}, tc.env...)
			s, out, code := runK6(t, filepath.Join("k6", "upload.js"), env...)
			if code != 99 {
				t.Errorf("exit %d, want 99\n%s", code, out)
			}
			crossed, _, _ := strings.Cut(out[strings.Index(out, "thresholds on metrics")+1:], "have been crossed")
			if !strings.Contains(out, "have been crossed") || !strings.Contains(crossed, "'"+tc.metric+"'") {
				t.Errorf("output does not name %s as crossed:\n%s", tc.metric, out)
			}
			for expr, th := range s.Thresholds[tc.metric] {
				if th.OK {
					t.Errorf("threshold %s %s: ok with %v, want crossed", tc.metric, expr, th.Value)
				}
			}
		})
	}
}

// TestK6ShimSemantics runs testdata/k6-semantics.js: two scenarios side
// by side (per-vu-iterations and shared-iterations, each with its own exec
// function and env), setup data, sleep, Counter/Gauge/Rate/Trend and
// thresholds on tag-filtered submetrics must all hold.
func TestK6ShimSemantics(t *testing.T) {
	r := startRoughy(t)
	s, out, code := runK6(t, filepath.Join("testdata", "k6-semantics.js"), "ROUGHY_URL="+r.URL)
	t.Logf("%s", out)
	if code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	if len(s.Thresholds) != 7 {
		t.Errorf("thresholds evaluated: got %d, want 7", len(s.Thresholds))
	}
	if got := s.Metrics["iterations"].Count; got != 11 {
		t.Errorf("iterations: got %v, want 6 + 5", got)
	}
}
