package fleet

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

var (
	loadUploads = flag.Int("load-uploads", 256, "concurrent uploads in BenchmarkLoad")
	loadSize    = flag.String("load-size", "8MiB", "bytes per upload in BenchmarkLoad")
	loadChunk   = flag.String("load-chunk", "2MiB", "PATCH size in BenchmarkLoad")
	loadBudget  = flag.Int("load-buffer-mib", 256, "--max-buffer-memory of the nodes in BenchmarkLoad, MiB")
	loadAborts  = flag.Float64("load-abort-rate", 0.02, "share of PATCHes cut off and resumed in BenchmarkLoad")
)

// loadKeys are five accounts for the single node: 256 concurrent uploads
// are at most 52 bodies of each, within the default
// --max-patches-per-account (64) even while the server still counts a
// PATCH the client cut off (-load-abort-rate) next to its resume.
var loadKeys = []string{
	"rk_live_loadoneloadoneloadoneloadone0001",
	"rk_live_loadtwoloadtwoloadtwoloadtwo0002",
	"rk_live_loadthrloadthrloadthrloadthr0003",
	"rk_live_loadfouloadfouloadfouloadfou0004",
	"rk_live_loadfivloadfivloadfivloadfiv0005",
}

// BenchmarkLoad runs `go run ./loadtest` with -load-uploads concurrent
// uploads (-load-abort-rate of the PATCHes cut off and resumed, every
// asset's SHA-256 checked, then deleted) against
//   - one node, embedded default, five accounts (the per-account cap of
//     64 bodies per node is left at its default);
//   - three fleet nodes on Redis and versitygw, PATCHes rotating over the
//     nodes, one account with --max-patches-per-account raised to the
//     number of uploads;
//
// all nodes with --max-buffer-memory -load-buffer-mib. It logs the
// generator's summary, each node's peak RSS (VmHWM), the machine and the
// load average, and fails if an upload failed or was corrupt, or a node's
// peak RSS went past the budget + 64 MiB. Not part of CI; run it alone:
//
//	go test ./e2e/fleet -run '^$' -bench Load -benchtime 1x -v
func BenchmarkLoad(b *testing.B) {
	gen := filepath.Join(b.TempDir(), "loadtest")
	if out, err := exec.Command("go", "build", "-o", gen, "github.com/roughy/ingest/loadtest").CombinedOutput(); err != nil {
		b.Fatalf("go build ./loadtest: %v\n%s", err, out)
	}
	budget := strconv.Itoa(*loadBudget) + "MiB"
	b.Run("embedded", func(b *testing.B) {
		var env []string
		var accounts []string
		for i, k := range loadKeys {
			accounts = append(accounts, fmt.Sprintf("load%d=%s", i, k))
		}
		env = append(env, "ROUGHY_API_KEYS="+strings.Join(accounts, ","))
		n := &testsvc.Roughy{Bin: roughyBin, Env: env,
			Args: []string{"--data-dir", b.TempDir(), "--probe-workers", "1", "--max-buffer-memory", budget}}
		n.Start(b)
		defer n.Stop(15 * time.Second)
		for b.Loop() {
			runLoad(b, gen, []*testsvc.Roughy{n}, loadKeys, false)
		}
	})
	b.Run("fleet3", func(b *testing.B) {
		f := startFleet(b, 3, "--max-buffer-memory", budget, "--max-patches-per-account", strconv.Itoa(*loadUploads))
		nodes := make([]*testsvc.Roughy, len(f.nodes))
		for i, n := range f.nodes {
			nodes[i] = n.Roughy
		}
		for b.Loop() {
			runLoad(b, gen, nodes, []string{fleetKey}, true)
		}
	})
}

func runLoad(b *testing.B, gen string, nodes []*testsvc.Roughy, keys []string, rotate bool) {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.URL+tusPath)
	}
	args := []string{"-url", strings.Join(urls, ","), "-key", strings.Join(keys, ","),
		"-c", strconv.Itoa(*loadUploads), "-size", *loadSize, "-chunk", *loadChunk,
		"-abort-rate", strconv.FormatFloat(*loadAborts, 'g', -1, 64), "-seed", "1",
		"-delete", "-verify", "-timeout", "5m", fmt.Sprintf("-rotate=%v", rotate)}
	b.Logf("machine: %d CPUs (%s), %s; load average before: %s", runtime.NumCPU(), cpuModel(), time.Now().UTC().Format(time.RFC3339), loadavg())
	b.Logf("command: loadtest %s", strings.Join(args, " "))
	cmd := exec.CommandContext(b.Context(), gen, args...)
	cmd.Env = testsvc.CleanEnv()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	b.Logf("load average after: %s\n%s", loadavg(), out.String())
	if err != nil {
		b.Errorf("loadtest: %v\n%s", err, tail(errOut.String(), 2000))
	}
	limit := int64(*loadBudget+64) << 20
	for _, n := range nodes {
		hwm := peakRSS(n.PID())
		b.Logf("node %s: peak RSS %.1f MiB (limit %d MiB)", n.URL, float64(hwm)/(1<<20), limit>>20)
		if hwm > limit {
			b.Errorf("node %s: peak RSS %d MiB, over --max-buffer-memory + 64 MiB", n.URL, hwm>>20)
		}
	}
}

// peakRSS is the process's VmHWM in bytes (0 when unreadable).
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "?"
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
