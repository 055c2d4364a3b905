// Command ingestbench measures Roughy ingest against tusd v2.9.1 (and, for
// S3, against a direct aws-sdk-go-v2 multipart upload) on this machine:
// every server runs as a child process on loopback with a fresh data dir,
// the harness uploads a random source file in fixed-size PATCHes, and the
// server's own CPU time and peak RSS come from /proc/<pid>.
//
// Scenarios: "local" (embedded default vs tusd), "s3" (S3 storage vs direct and tusd), "fleet" (nodes on Redis and S3),
// "many" (many small uploads at once, embedded default vs tusd). See
// bench/README.md for the commands and bench/RESULTS.md for the figures.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/roughy/ingest/bench/internal/benchproc"
)

// options are the command-line flags.
type options struct {
	scenario    string
	size        int64
	chunk       int64
	runs        int
	warmup      int
	conc        int
	concSize    int64
	concTargets string
	targets     string
	work        string
	src         string
	roughyBin   string
	// roughyBefore is the binary of the "roughy-before" target: an older
	// build measured beside this one, alternating, to show a change kept
	// the figures.
	roughyBefore string
	roughyExtra  string
	tusdBin      string
	vgwBin       string
	redisBin     string
	results      string
	verify       bool
	keep         bool
	direct       directOptions
	fleetNodes   int
	fleetConc    int
	fleetSize    int64
	apiKey       string
	redisProxy   bool
	many         string
	manyStrace   bool
	manyStores   string
}

func main() {
	var o options
	var size, chunk, concSize, fleetSize benchproc.SizeFlag = 2 << 30, 64 << 20, 0, 256 << 20
	flag.StringVar(&o.scenario, "scenario", "local", "local | s3 | fleet | many")
	flag.Var(&size, "size", "bytes per upload in the alternating runs (e.g. 2GiB, 512MiB)")
	flag.Var(&chunk, "chunk", "PATCH body size (and S3 part size of the direct upload)")
	flag.IntVar(&o.runs, "runs", 3, "runs per target in the alternating phase")
	flag.IntVar(&o.warmup, "warmup", 1, "untimed rounds of every target before the alternating phase (listed, not in the medians)")
	flag.IntVar(&o.conc, "conc", 16, "concurrent uploads in the concurrency phase (0 = skip)")
	flag.Var(&concSize, "conc-size", "bytes per upload in the concurrency phase (default 256MiB local, 512MiB s3)")
	flag.StringVar(&o.concTargets, "conc-targets", "roughy", "comma list of targets for the concurrency phase")
	flag.StringVar(&o.targets, "targets", "", "comma list of targets for the alternating phase (default: all of the scenario)")
	flag.StringVar(&o.work, "work", filepath.Join(os.TempDir(), "ingestbench"), "work dir (source file, per-run data dirs, logs)")
	flag.StringVar(&o.src, "src", "", "source file (default <work>/source-<size>.bin, generated once)")
	flag.StringVar(&o.roughyBin, "roughy", "", "roughy binary (default: go build ./cmd/roughy into the work dir)")
	flag.StringVar(&o.roughyBefore, "roughy-before", "", "roughy binary of the roughy-before target (an older build, measured beside -roughy in the same run)")
	flag.StringVar(&o.roughyExtra, "roughy-args", "", "extra arguments for `roughy serve`, space separated")
	flag.StringVar(&o.tusdBin, "tusd", lookBin("tusd"), "tusd v2.9.1 binary")
	flag.StringVar(&o.vgwBin, "versitygw", lookBin("versitygw"), "versitygw binary")
	flag.StringVar(&o.redisBin, "redis-server", "redis-server", "redis-server binary")
	flag.StringVar(&o.results, "results", "bench/RESULTS.md", "markdown file the results are appended to (\"\" = stdout only)")
	flag.BoolVar(&o.verify, "verify", true, "check every stored object after its run (outside the timed window)")
	flag.BoolVar(&o.keep, "keep", false, "keep per-run data dirs")
	flag.IntVar(&o.direct.parallel, "direct-parallel", 1, "parts in flight for the direct S3 upload")
	flag.BoolVar(&o.direct.signed, "direct-signed-payload", false, "direct S3 upload: SigV4-hash each part (default: UNSIGNED-PAYLOAD, no SDK checksum)")
	flag.IntVar(&o.fleetNodes, "fleet-nodes", 3, "roughy nodes in the fleet scenario")
	flag.IntVar(&o.fleetConc, "fleet-conc", 32, "concurrent uploads in the fleet scenario")
	flag.Var(&fleetSize, "fleet-size", "bytes per upload in the fleet scenario")
	flag.BoolVar(&o.redisProxy, "redis-proxy", true, "fleet: count the nodes' Redis commands and round trips through a RESP proxy")
	flag.StringVar(&o.many, "many", "2000x256KiB@32,400x4MiB@32,256x8MiB@256", "many scenario: workloads, N x SIZE @ CONCURRENT, comma separated")
	flag.BoolVar(&o.manyStrace, "many-strace", true, "many scenario: one more run per target and workload under strace -c to count sync calls")
	flag.StringVar(&o.manyStores, "many-stores", "embedded", "many scenario: embedded (roughy --data-dir vs tusd file store) | fleet (roughy on Redis + versitygw vs tusd S3 store)")
	flag.StringVar(&o.apiKey, "api-key", "rk_live_benchkey", "roughy API key (passed as ROUGHY_API_KEYS=bench=KEY)")
	flag.Parse()
	o.size, o.chunk, o.concSize, o.fleetSize = int64(size), int64(chunk), int64(concSize), int64(fleetSize)
	if o.concSize == 0 {
		o.concSize = 256 << 20
		if o.scenario == "s3" {
			o.concSize = 512 << 20
		}
	}
	o.direct.partSize = o.chunk

	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, &o); err != nil {
		slog.Error("ingestbench failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o *options) error {
	if err := os.MkdirAll(o.work, 0o755); err != nil {
		return fmt.Errorf("ingestbench: work dir: %w", err)
	}
	need := o.size
	if o.conc > 0 {
		need = max(need, o.concSize)
	}
	if o.scenario == "fleet" {
		need = max(need, o.fleetSize)
	}
	if o.scenario == "many" {
		wls, err := parseWorkloads(o.many)
		if err != nil {
			return err
		}
		need = sourceNeed(wls)
	}
	src, err := openSource(o.work, o.src, need)
	if err != nil {
		return err
	}
	defer src.f.Close()

	b := &bench{o: o, src: src, started: time.Now().UTC()}
	b.machine = describeMachine(o)
	if o.scenario == "many" {
		mr, err := b.manyScenario(ctx)
		b.emit(mr.markdown(b))
		return err
	}
	var rep *report
	switch o.scenario {
	case "local":
		rep, err = b.localScenario(ctx)
	case "s3":
		rep, err = b.s3Scenario(ctx)
	case "fleet":
		rep, err = b.fleetScenario(ctx)
	default:
		return fmt.Errorf("ingestbench: unknown scenario %q", o.scenario)
	}
	if rep != nil {
		b.emit(rep.markdown(b))
	}
	return err
}

// emit prints a report and appends it to -results.
func (b *bench) emit(md string) {
	fmt.Println(md)
	if b.o.results == "" {
		return
	}
	if err := appendFile(b.o.results, md); err != nil {
		slog.Error("write results", "err", err)
		return
	}
	slog.Info("results appended", "file", b.o.results)
}

// bench holds one invocation's state.
type bench struct {
	o       *options
	src     *source
	started time.Time
	machine machineInfo
	roughy  string // built or given roughy binary ("" until needed)
	seq     int    // run counter for data dir names

	s3          *s3env            // s3 and fleet scenarios: the shared versitygw
	redis       *benchproc.Server // fleet scenario: the shared redis-server
	redisURL    string            // what the nodes are given (the proxy when on)
	redisDirect string            // redis-server itself
	rproxy      *redisProxy       // counts the nodes' commands and round trips
	straceBin   string            // many scenario: servers start under strace -c when set
	straceOut   string            // the strace table of the server started last
}

// roughyBinary builds ./cmd/roughy once (unless -roughy was given).
func (b *bench) roughyBinary(ctx context.Context) (string, error) {
	if b.roughy != "" {
		return b.roughy, nil
	}
	if b.o.roughyBin != "" {
		b.roughy = b.o.roughyBin
		return b.roughy, nil
	}
	out := filepath.Join(b.o.work, "roughy")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/roughy")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ingestbench: go build ./cmd/roughy (run from the repo root): %w", err)
	}
	b.roughy = out
	return out, nil
}

// runDir makes a fresh directory for one run.
func (b *bench) runDir(name string) (string, error) {
	b.seq++
	d := filepath.Join(b.o.work, fmt.Sprintf("run-%s-%03d-%s", b.started.Format("150405"), b.seq, name))
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("ingestbench: run dir: %w", err)
	}
	return d, nil
}

// cleanup removes a run dir's data (keeping its logs when -keep) and
// flushes dirty pages, so that one server's write-back does not land in
// the next server's timed window.
func (b *bench) cleanup(dir string) {
	if !b.o.keep {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".log") {
				os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
	}
	syscall.Sync()
}

func (b *bench) targetsOr(def ...string) []string {
	if b.o.targets == "" {
		return def
	}
	return splitList(b.o.targets)
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func lookBin(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return filepath.Join("/root/go/bin", name)
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("ingestbench: open results: %w", err)
	}
	if _, err := f.WriteString("\n" + text); err != nil {
		f.Close()
		return fmt.Errorf("ingestbench: write results: %w", err)
	}
	return f.Close()
}
