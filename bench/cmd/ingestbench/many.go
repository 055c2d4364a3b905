package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/roughy/ingest/bench/internal/benchproc"
	"github.com/roughy/ingest/tusclient"
)

// workload is one line of the many scenario: n uploads of size bytes,
// conc of them in flight at a time.
type workload struct {
	n    int
	size int64
	conc int
}

func (w workload) String() string {
	return fmt.Sprintf("%d × %s, %d concurrent", w.n, benchproc.FormatSize(w.size), w.conc)
}

// parseWorkloads reads "2000x256KiB@32,256x8MiB@256" (N x SIZE @ CONC;
// "@CONC" may be left out, meaning all N at once).
func parseWorkloads(spec string) ([]workload, error) {
	var out []workload
	for _, item := range splitList(spec) {
		head, concStr, hasConc := strings.Cut(item, "@")
		x := strings.IndexAny(head, "xX×")
		if x < 0 {
			return nil, fmt.Errorf("ingestbench: workload %q: want N x SIZE @ CONC, e.g. 2000x256KiB@32", item)
		}
		nStr, sizeStr := head[:x], strings.TrimLeft(head[x:], "xX×")
		n, err := strconv.Atoi(strings.TrimSpace(nStr))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("ingestbench: workload %q: bad upload count %q", item, nStr)
		}
		var size benchproc.SizeFlag
		if err := size.Set(strings.TrimSpace(sizeStr)); err != nil || size <= 0 {
			return nil, fmt.Errorf("ingestbench: workload %q: bad size %q", item, sizeStr)
		}
		conc := n
		if hasConc {
			if conc, err = strconv.Atoi(strings.TrimSpace(concStr)); err != nil || conc <= 0 {
				return nil, fmt.Errorf("ingestbench: workload %q: bad concurrency %q", item, concStr)
			}
		}
		out = append(out, workload{n: n, size: int64(size), conc: min(conc, n)})
	}
	if len(out) == 0 {
		return nil, errors.New("ingestbench: -many names no workload")
	}
	return out, nil
}

// manyRun is one run of one target on one workload.
type manyRun struct {
	target string
	phase  string // "warm", "alt" or "strace"
	run    int
	w      workload
	wall   time.Duration // first POST to last 204 of all uploads
	cpu    time.Duration // server CPU over the window; -1 = not measured
	// childCPU is the CPU of the server's children (ffprobe) that ended
	// in the window.
	childCPU time.Duration
	hwm      int64
	posts    []time.Duration
	patchs   []time.Duration
	syncs    map[string]int64 // strace -c calls per syscall; nil = not counted
	trips    int64            // Redis round trips over the window; -1 = not counted
	cmds     int64            // Redis commands the server sent over the window; -1 = not counted
	load1    string
	// busy and iowait are the shares of the whole machine's CPU time over
	// the window that were busy and waiting for I/O (-1: not measured):
	// client, server and kernel share the cores.
	busy, iowait float64
	verify       string
	err          error
}

func (r manyRun) ok() bool { return r.err == nil && !strings.HasPrefix(r.verify, "FAILED") }

func (r manyRun) uploadsPerSec() float64 { return float64(r.w.n) / r.wall.Seconds() }

// perUpload divides a count by the uploads (-1 stays "not counted").
func (r manyRun) perUpload(v int64) float64 {
	if v < 0 {
		return -1
	}
	return float64(v) / float64(r.w.n)
}

// cpuMsPerUpload is the server's CPU per upload in milliseconds (-1 when
// not measured).
func (r manyRun) cpuMsPerUpload() float64 {
	if r.cpu < 0 {
		return -1
	}
	return float64(r.cpu) / float64(time.Millisecond) / float64(r.w.n)
}

// childMsPerUpload is the CPU of the server's children per upload in
// milliseconds (-1 when not measured).
func (r manyRun) childMsPerUpload() float64 {
	if r.cpu < 0 {
		return -1
	}
	return float64(r.childCPU) / float64(time.Millisecond) / float64(r.w.n)
}

// syncCalls are the calls counted as "fsyncs": every way a process can ask
// the kernel to make data durable.
var syncCalls = []string{"fsync", "fdatasync", "sync_file_range", "syncfs", "sync"}

// fsyncsPerUpload is the number of sync calls over the server's life
// (start-up and shutdown included) per upload; -1 = not counted.
func (r manyRun) fsyncsPerUpload() float64 {
	if r.syncs == nil {
		return -1
	}
	var total int64
	for _, c := range syncCalls {
		total += r.syncs[c]
	}
	return float64(total) / float64(r.w.n)
}

// manyScenario: many small uploads at once, roughy's embedded default
// against tusd's file store, alternating, each run a fresh process.
func (b *bench) manyScenario(ctx context.Context) (*manyReport, error) {
	rep := &manyReport{title: "Many small uploads at once: roughy vs tusd"}
	wls, err := parseWorkloads(b.o.many)
	if err != nil {
		return rep, err
	}
	switch b.o.manyStores {
	case "embedded":
	case "fleet":
		rep.title += " (roughy --sessions redis --storage s3 vs tusd S3 store, one versitygw)"
		rep.fleet = true
		stop, err := b.startFleetStores(ctx)
		if err != nil {
			return rep, err
		}
		defer stop()
	default:
		return rep, fmt.Errorf("ingestbench: -many-stores %q: want embedded or fleet", b.o.manyStores)
	}
	// roughy caps the bodies one account streams to a node at once (503
	// past it) and every upload here is the same account's; tusd has no
	// such cap, so the cap is lifted to the most uploads in flight.
	if !strings.Contains(b.o.roughyExtra, "max-patches-per-account") {
		most := 0
		for _, w := range wls {
			most = max(most, w.conc)
		}
		b.o.roughyExtra = strings.TrimSpace(fmt.Sprintf("%s --max-patches-per-account %d", b.o.roughyExtra, most))
	}
	targets := b.targetsOr("roughy", "tusd")
	var probe report
	if err := b.checkTargets(ctx, &probe, targets); err != nil {
		return rep, err
	}
	rep.missing = probe.missing
	targets = b.available(&probe, targets)
	for _, w := range wls {
		for _, rd := range []struct {
			phase string
			count int
		}{{"warm", b.o.warmup}, {"alt", b.o.runs}} {
			for i := range rd.count {
				for _, t := range targets {
					if ctx.Err() != nil {
						return rep, ctx.Err()
					}
					rep.runs = append(rep.runs, b.runMany(ctx, t, rd.phase, i+1, w))
				}
			}
		}
	}
	b.straceRounds(ctx, rep, targets, wls)
	return rep, nil
}

// startFleetStores starts redis-server (behind the counting proxy) and
// versitygw, which startRoughy and startTusd then use.
func (b *bench) startFleetStores(ctx context.Context) (func(), error) {
	if err := b.startRedis(ctx); err != nil {
		return nil, err
	}
	if err := b.startS3(ctx); err != nil {
		b.redis.Stop(10 * time.Second)
		return nil, err
	}
	return func() {
		b.s3.stop()
		if b.rproxy != nil {
			b.rproxy.close()
		}
		b.redis.Stop(10 * time.Second)
	}, nil
}

// straceRounds runs every target once more per workload under strace -c to
// count its sync calls. These runs are separate because ptrace stops the
// server at each traced call, which would slow the timed runs unevenly
// (tusd makes no such call).
func (b *bench) straceRounds(ctx context.Context, rep *manyReport, targets []string, wls []workload) {
	if !b.o.manyStrace {
		rep.notes = append(rep.notes, "fsyncs: not counted (-many-strace=false)")
		return
	}
	bin, err := exec.LookPath("strace")
	if err != nil {
		rep.notes = append(rep.notes, "fsyncs: not measured (strace is not installed)")
		return
	}
	b.straceBin = bin
	defer func() { b.straceBin = "" }()
	for _, w := range wls {
		for _, t := range targets {
			if ctx.Err() != nil {
				return
			}
			rep.runs = append(rep.runs, b.runMany(ctx, t, "strace", 1, w))
		}
	}
}

// start starts a server, under strace -c when a strace round is on.
func (b *bench) start(name, bin string, args, env []string, logPath string) (*benchproc.Server, error) {
	if b.straceBin == "" {
		return benchproc.Start(name, bin, args, env, logPath)
	}
	b.straceOut = strings.TrimSuffix(logPath, ".log") + ".strace.log"
	wrapped := append([]string{"-f", "-c", "--seccomp-bpf", "-e", "trace=" + strings.Join(syncCalls, ","),
		"-o", b.straceOut, "--", bin}, args...)
	return benchproc.Start(name, b.straceBin, wrapped, env, logPath)
}

// runMany starts target t fresh, runs workload w through it, stops it.
func (b *bench) runMany(ctx context.Context, t, phase string, run int, w workload) manyRun {
	r := manyRun{target: t, phase: phase, run: run, w: w, cpu: -1, hwm: -1, trips: -1, cmds: -1, busy: -1, iowait: -1, load1: benchproc.LoadAvg()}
	slog.Info("run", "target", t, "phase", phase, "run", run, "workload", w.String())
	defer func() { logMany(r) }()
	dir, err := b.runDir(t)
	if err != nil {
		r.err = err
		return r
	}
	defer b.cleanup(dir)
	b.straceOut = ""
	if err := b.emptyStores(ctx); err != nil {
		r.err = err
		return r
	}
	var inst *instance
	switch t {
	case "roughy", "roughy-before", "tusd":
		inst, err = b.startTarget(ctx, t, dir)
	default:
		err = fmt.Errorf("ingestbench: target %q is not one of the many scenario (roughy, roughy-before, tusd)", t)
	}
	if err != nil {
		r.err = err
		return r
	}
	b.driveMany(ctx, &r, inst, w)
	if b.straceOut != "" {
		stopTraced(inst.procs)
	}
	inst.stop()
	if b.straceOut != "" {
		r.syncs, err = readStraceSummary(b.straceOut)
		if err != nil {
			r.err = errors.Join(r.err, err)
		}
	}
	return r
}

// uploadAll runs w.n uploads through inst, w.conc at a time, filling
// results and errs by upload index.
func (b *bench) uploadAll(ctx context.Context, hc *http.Client, inst *instance, w workload, bases []int64, results []tusclient.Result, errs []error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range w.conc {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < w.n && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				c := tusclient.Client{HTTP: hc, Endpoint: inst.endpoints[0], Header: inst.header,
					Metadata: tusclient.SortedMetadata(inst.meta), ChunkSize: min(b.o.chunk, w.size)}
				results[i], errs[i] = c.Upload(ctx, b.src.f, bases[i], w.size)
			}
		})
	}
	wg.Wait()
}

// driveMany runs w.n uploads through inst, w.conc at a time, measures the
// server over the window and checks what was stored.
func (b *bench) driveMany(ctx context.Context, r *manyRun, inst *instance, w workload) {
	hc := tusclient.NewHTTPClient(0)
	defer hc.CloseIdleConnections()
	bases := make([]int64, w.n)
	for i := range w.n {
		bases[i] = b.src.sectionBase(i, w.size)
	}
	results := make([]tusclient.Result, w.n)
	errs := make([]error, w.n)
	// Under strace the server's PID is strace's: its CPU is not the
	// server's, so the strace rounds only count sync calls.
	measured := b.straceBin == ""
	before, err := measure(inst.procs)
	if err != nil {
		r.err = err
		return
	}
	if b.rproxy != nil {
		b.rproxy.snapshot()
	}
	machBefore, machErr := benchproc.ReadMachineCPU()
	start := time.Now()
	b.uploadAll(ctx, hc, inst, w, bases, results, errs)
	r.wall = time.Since(start)
	machAfter, err := benchproc.ReadMachineCPU()
	if machErr == nil && err == nil {
		r.busy, r.iowait = machAfter.Since(machBefore)
	}
	after, err := measure(inst.procs)
	if err != nil {
		r.err = err
		return
	}
	if measured {
		r.cpu, r.hwm = after.CPU-before.CPU, after.HWM
		r.childCPU = after.ChildCPU - before.ChildCPU
	}
	if b.rproxy != nil {
		stats, trips := b.rproxy.snapshot()
		r.trips, r.cmds = trips, 0
		for _, c := range stats {
			r.cmds += c.calls
		}
	}
	for _, res := range results {
		if res.Location != "" {
			r.posts = append(r.posts, res.Create)
		}
		r.patchs = append(r.patchs, res.Patches...)
	}
	if r.err = firstError(errs); r.err != nil {
		return
	}
	r.verify = "skipped"
	if b.o.verify && inst.verify != nil {
		r.verify = inst.verify(ctx, results, bases, w.size)
	}
}

// firstError is the first of errs and how many uploads failed: with
// hundreds of uploads in flight one cause fails many of them alike.
func firstError(errs []error) error {
	var first error
	n := 0
	for _, err := range errs {
		if err != nil {
			n++
			if first == nil {
				first = err
			}
		}
	}
	if n > 1 {
		return fmt.Errorf("%d uploads failed; the first: %w", n, first)
	}
	return first
}

// emptyStores empties the bucket and Redis between runs, as runTarget does.
func (b *bench) emptyStores(ctx context.Context) error {
	if b.s3 != nil {
		if err := b.s3.reset(ctx); err != nil {
			return err
		}
	}
	if b.redis != nil {
		if _, err := redisCmd(b.redisAddr(), "FLUSHALL"); err != nil {
			return err
		}
	}
	return nil
}

func logMany(r manyRun) {
	if r.err != nil {
		slog.Error("run failed", "target", r.target, "phase", r.phase, "run", r.run, "err", r.err)
		return
	}
	slog.Info("run done", "target", r.target, "phase", r.phase, "run", r.run,
		"uploads/s", fmt.Sprintf("%.1f", r.uploadsPerSec()),
		"cpu_ms_per_upload", fmt.Sprintf("%.2f", r.cpuMsPerUpload()), "ffprobe_ms_per_upload", fmt.Sprintf("%.2f", r.childMsPerUpload()),
		"fsyncs_per_upload", fmt.Sprintf("%.2f", r.fsyncsPerUpload()),
		"post_p99", ms(percentile(r.posts, 0.99)), "check", r.verify)
}

// stopTraced sends SIGTERM to the servers strace started and waits for
// them: strace writes its table when its tracee has exited, while a
// SIGTERM to strace itself left it waiting until the SIGKILL, table
// unwritten.
func stopTraced(procs []*benchproc.Server) {
	for _, p := range procs {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.PID(), p.PID()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(raw)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGTERM)
			}
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, p := range procs {
		for !p.Exited() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// readStraceSummary reads the calls column of a `strace -c` table.
func readStraceSummary(path string) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ingestbench: strace summary: %w", err)
	}
	defer f.Close()
	return parseStraceSummary(bufio.NewScanner(f))
}

// parseStraceSummary takes the rows "% time, seconds, usecs/call, calls,
// [errors,] syscall" of a strace -c table; the "total" row and the header
// are skipped. A table with no row is a valid answer: no sync call made.
func parseStraceSummary(sc *bufio.Scanner) (map[string]int64, error) {
	out := map[string]int64{}
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[0] == "%" || strings.HasPrefix(f[0], "-") {
			continue
		}
		name := f[len(f)-1]
		if name == "total" {
			continue
		}
		calls, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("ingestbench: strace summary row %q: %w", sc.Text(), err)
		}
		out[name] = calls
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ingestbench: strace summary: %w", err)
	}
	return out, nil
}

// sourceNeed is the source file size the many scenario reads from.
func sourceNeed(wls []workload) int64 {
	need := int64(512 << 20)
	for _, w := range wls {
		need = max(need, w.size)
	}
	return need
}
