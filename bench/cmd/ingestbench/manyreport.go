package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/roughy/ingest/bench/internal/benchproc"
)

// manyReport holds the runs of the many scenario.
type manyReport struct {
	title   string
	runs    []manyRun
	missing []string
	notes   []string
	fleet   bool // roughy on Redis + S3, tusd on S3: Redis columns
}

// manySummary is one target on one workload over its alternating runs:
// medians of the per-run figures, latencies pooled over the runs.
type manySummary struct {
	ok, total     int
	uploadsPerSec float64
	cpuMs         float64 // -1: not measured
	childMs       float64 // the server's children (ffprobe); -1: not measured
	posts, patchs []time.Duration
	fsyncs        float64 // from the strace run; -1: not counted
	trips, cmds   float64 // Redis per upload (median); -1: not counted
}

func (r *manyReport) summary(target string, w workload) manySummary {
	s := manySummary{cpuMs: -1, childMs: -1, fsyncs: -1, trips: -1, cmds: -1}
	var ups, cpu, child, trips, cmds []float64
	for _, run := range r.runs {
		if run.target != target || run.w != w {
			continue
		}
		if run.phase == "strace" {
			if run.ok() {
				s.fsyncs = run.fsyncsPerUpload()
			}
			continue
		}
		if run.phase != "alt" {
			continue
		}
		s.total++
		if !run.ok() {
			continue
		}
		s.ok++
		ups = append(ups, run.uploadsPerSec())
		if c := run.cpuMsPerUpload(); c >= 0 {
			cpu = append(cpu, c)
			child = append(child, run.childMsPerUpload())
		}
		if run.trips >= 0 {
			trips = append(trips, run.perUpload(run.trips))
			cmds = append(cmds, run.perUpload(run.cmds))
		}
		s.posts = append(s.posts, run.posts...)
		s.patchs = append(s.patchs, run.patchs...)
	}
	s.uploadsPerSec = median(ups)
	if len(cpu) > 0 {
		s.cpuMs, s.childMs = median(cpu), median(child)
	}
	if len(trips) > 0 {
		s.trips, s.cmds = median(trips), median(cmds)
	}
	return s
}

// workloads lists the workloads in the order they ran.
func (r *manyReport) workloads() []workload {
	var out []workload
	for _, run := range r.runs {
		if !slices.Contains(out, run.w) {
			out = append(out, run.w)
		}
	}
	return out
}

func (r *manyReport) targets() []string {
	var out []string
	for _, run := range r.runs {
		if !slices.Contains(out, run.target) {
			out = append(out, run.target)
		}
	}
	return out
}

// p3 renders p50 / p95 / p99 of ds in milliseconds.
func p3(ds []time.Duration) string {
	if len(ds) == 0 {
		return "–"
	}
	return fmt.Sprintf("%s / %s / %s", msf(percentile(ds, 0.5)), msf(percentile(ds, 0.95)), msf(percentile(ds, 0.99)))
}

// msf is a latency in ms with a decimal below 10 ms, where whole
// milliseconds would hide the differences.
func msf(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	if v < 10 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func (r *manyReport) label(target string) string {
	switch {
	case target == "roughy" && r.fleet:
		return "roughy --sessions redis --storage s3"
	case target == "tusd" && r.fleet:
		return "tusd v2.9.1 S3 store"
	case target == "roughy":
		return "roughy embedded default"
	case target == "tusd":
		return "tusd v2.9.1 file store"
	}
	return target
}

// table renders the medians: one row per workload and target, then the
// roughy/tusd ratio of uploads/s.
func (r *manyReport) table() string {
	var w strings.Builder
	w.WriteString("| workload | target | ok runs | uploads/s | POST p50 / p95 / p99 ms | PATCH p50 / p95 / p99 ms | server CPU-ms per upload | its ffprobe CPU-ms per upload | fsyncs per upload |")
	if r.fleet {
		w.WriteString(" Redis round trips / commands per upload |\n|---|---|---|---|---|---|---|---|---|---|\n")
	} else {
		w.WriteString("\n|---|---|---|---|---|---|---|---|---|\n")
	}
	for _, wl := range r.workloads() {
		for _, t := range r.targets() {
			s := r.summary(t, wl)
			fmt.Fprintf(&w, "| %s | %s | %d/%d | %s | %s | %s | %s | %s | %s |", wl, r.label(t), s.ok, s.total,
				f1(s.ok > 0, s.uploadsPerSec, "%.1f"), p3(s.posts), p3(s.patchs),
				f1(s.cpuMs >= 0, s.cpuMs, "%.2f"), f1(s.childMs >= 0, s.childMs, "%.2f"), f1(s.fsyncs >= 0, s.fsyncs, "%.2f"))
			if r.fleet {
				fmt.Fprintf(&w, " %s / %s |", f1(s.trips >= 0, s.trips, "%.1f"), f1(s.cmds >= 0, s.cmds, "%.1f"))
			}
			w.WriteString("\n")
		}
	}
	var ratios []string
	for _, wl := range r.workloads() {
		ro, td := r.summary("roughy", wl), r.summary("tusd", wl)
		if ro.ok > 0 && td.ok > 0 && td.uploadsPerSec > 0 {
			ratios = append(ratios, fmt.Sprintf("%s: **%.2f×**", wl, ro.uploadsPerSec/td.uploadsPerSec))
		}
	}
	if len(ratios) > 0 {
		fmt.Fprintf(&w, "\nroughy/tusd uploads/s (medians): %s\n", strings.Join(ratios, "; "))
	}
	return w.String()
}

// everyRun lists the runs in the order they ran.
func (r *manyReport) everyRun() string {
	var w strings.Builder
	w.WriteString("| # | workload | target | phase | uploads/s | POST p50 / p99 ms | PATCH p50 / p99 ms | CPU-ms per upload (+ ffprobe) | peak RSS MiB | sync calls | Redis round trips per upload | machine CPU busy / iowait % | load avg at start | check |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for i, run := range r.runs {
		if run.err != nil {
			fmt.Fprintf(&w, "| %d | %s | %s | %s | failed: %s | | | | | | | | %s | |\n", i+1, run.w, r.label(run.target), run.phase, oneLine(run.err.Error()), run.load1)
			continue
		}
		fmt.Fprintf(&w, "| %d | %s | %s | %s | %.1f | %s / %s | %s / %s | %s | %s | %s | %s | %s | %s | %s |\n", i+1, run.w, r.label(run.target), run.phase,
			run.uploadsPerSec(), msf(percentile(run.posts, 0.5)), msf(percentile(run.posts, 0.99)),
			msf(percentile(run.patchs, 0.5)), msf(percentile(run.patchs, 0.99)),
			cpuString(run), f1(run.hwm >= 0, float64(run.hwm)/(1<<20), "%.1f"),
			syncString(run.syncs), f1(run.trips >= 0, run.perUpload(run.trips), "%.1f"), machineString(run), run.load1, run.verify)
	}
	return w.String()
}

// machineString is the machine's busy and iowait shares over a run:
// "93 / 5".
func machineString(run manyRun) string {
	if run.busy < 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f / %.0f", 100*run.busy, 100*run.iowait)
}

// cpuString is a run's server CPU per upload, and its children's when
// they took any: "2.10 + 61.3".
func cpuString(run manyRun) string {
	switch {
	case run.cpu < 0:
		return "–"
	case run.childCPU > 0:
		return fmt.Sprintf("%.2f + %.1f", run.cpuMsPerUpload(), run.childMsPerUpload())
	}
	return fmt.Sprintf("%.2f", run.cpuMsPerUpload())
}

func syncString(m map[string]int64) string {
	if m == nil {
		return "–"
	}
	var parts []string
	for _, c := range syncCalls {
		if m[c] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", c, m[c]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func (r *manyReport) markdown(b *bench) string {
	var w strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&w, format, a...) }
	b.writeHeader(&w, r.title, "")
	stores := "roughy: `serve --data-dir`; tusd: `-upload-dir`"
	if r.fleet {
		stores = "roughy: `serve --sessions redis --storage s3`, one node; tusd: `-s3-bucket -s3-endpoint`; one redis-server (AOF everysec, behind a proxy that counts round trips) and one versitygw (posix) for all runs, emptied between runs"
	}
	p("- Method: per workload, %d warm-up round(s) (listed, not in the medians) then %d round(s), each round roughy then tusd, every run a fresh server process on loopback with a fresh data dir (%s). "+
		"The client (this harness, `tusclient`, same machine) keeps CONC uploads in flight; each upload is one POST then PATCHes of up to %s with Content-Length, sent from a random source file with sendfile(2). "+
		"uploads/s = uploads / (first POST to last 204). POST and PATCH percentiles are pooled over a target's runs (nearest rank). "+
		"Server CPU = utime+stime of the server process from /proc/<pid>/stat over that window, divided by the uploads; the CPU of roughy's ffprobe children (cutime+cstime, counted as each ends) is given apart. "+
		"Machine CPU = /proc/stat over the same window, all cores: busy (neither idle nor iowait) and iowait, as shares of the time; client, servers and the kernel's I/O share the cores. "+
		"After each run every upload is checked (roughy: asset ready with the source's SHA-256; tusd: the stored file's SHA-256, or on S3 the number and size of the objects).\n",
		b.o.warmup, b.o.runs, stores, benchproc.FormatSize(b.o.chunk))
	p("- roughy's extra arguments: `%s` (each upload here is the same API key's, and roughy caps the bodies one account streams to a node at once, tusd does not; the harness lifts the cap to the most uploads in flight unless -roughy-args sets it).\n", orNone(b.o.roughyExtra))
	p("- fsyncs per upload: one more run per target and workload with the server started under `strace -f -c --seccomp-bpf -e trace=%s` (ptrace stops it at each such call, so that run is not timed: its uploads/s is listed below, not in the medians); calls over the whole process life, start-up and shutdown included, divided by the uploads. Writes made durable by other means (O_DSYNC, O_DIRECT) are not counted.\n", strings.Join(syncCalls, ","))
	if len(r.missing) > 0 {
		p("- **Not measured**: %s\n", strings.Join(r.missing, "; "))
	}
	for _, n := range r.notes {
		p("- %s\n", n)
	}
	p("\n%s\n", r.table())
	p("<details><summary>Every run, in the order run</summary>\n\n%s\n</details>\n", r.everyRun())
	return w.String()
}
