package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/roughy/ingest/bench/internal/benchproc"
)

// report collects one invocation's samples and renders them as markdown.
type report struct {
	scenario string
	title    string
	samples  []sample
	missing  []string
	extra    []string // scenario-specific lines (fleet: Redis, commit latency)
}

// medians of the successful alternating runs of one target.
type medians struct {
	ok, total             int
	mibps, cpu, rss, s3   float64
	hasCPU, hasRSS, hasS3 bool
}

func (r *report) medians(target, phase string) medians {
	var m medians
	var tp, cpu, rss, s3 []float64
	for _, s := range r.samples {
		if s.target != target || s.phase != phase {
			continue
		}
		m.total++
		if s.err != nil || strings.HasPrefix(s.verify, "FAILED") {
			continue
		}
		m.ok++
		tp = append(tp, s.mibps())
		if s.cpu >= 0 {
			cpu = append(cpu, perGiB(s.cpu, s.bytes))
		}
		if s.hwm >= 0 {
			rss = append(rss, float64(s.hwm)/(1<<20))
		}
		if s.s3CPU >= 0 {
			s3 = append(s3, perGiB(s.s3CPU, s.bytes))
		}
	}
	m.mibps = median(tp)
	m.cpu, m.hasCPU = median(cpu), len(cpu) > 0
	m.rss, m.hasRSS = median(rss), len(rss) > 0
	m.s3, m.hasS3 = median(s3), len(s3) > 0
	return m
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (r *report) targets(phase string) []string {
	var out []string
	for _, s := range r.samples {
		if s.phase == phase && !slices.Contains(out, s.target) {
			out = append(out, s.target)
		}
	}
	return out
}

func f1(ok bool, v float64, format string) string {
	if !ok {
		return "–"
	}
	return fmt.Sprintf(format, v)
}

func (b *bench) label(target string) string {
	switch {
	case target == "direct":
		return "(a) direct aws-sdk-go-v2 multipart"
	case target == "roughy" && b.o.scenario == "s3":
		return "(b) roughy --storage s3"
	case target == "tusd" && b.o.scenario == "s3":
		return "(c) tusd v2.9.1 S3 store"
	case target == "roughy" && b.o.scenario == "local":
		return "roughy embedded default"
	case target == "roughy-before":
		return "roughy before the change (-roughy-before)"
	case target == "roughy-tls":
		return "roughy embedded default over TLS (--tls-cert)"
	case target == "tusd":
		return "tusd v2.9.1 file store"
	case target == "roughy" && b.o.scenario == "fleet":
		return "roughy, 1 node"
	case target == "roughy-fleet":
		return fmt.Sprintf("roughy, %d nodes", b.o.fleetNodes)
	}
	return target
}

// writeHeader writes a report's title and what every report says of its
// run: date, command, machine and versions (others: more of them, e.g.
// "versitygw v1.8.0, ").
func (b *bench) writeHeader(w *strings.Builder, title, others string) {
	m := b.machine
	fmt.Fprintf(w, "## %s\n\n", title)
	fmt.Fprintf(w, "- Date: %s UTC (took %s)\n", b.started.Format("2006-01-02 15:04"), time.Since(b.started).Round(time.Second))
	fmt.Fprintf(w, "- Command (from the repo root): `%s`\n", commandLine())
	fmt.Fprintf(w, "- Machine: %d CPUs, %s, kernel %s, RAM %s, %s\n", m.nproc, m.cpu, m.kernel, m.memTotal, m.goVersion)
	fmt.Fprintf(w, "- Versions: tusd %s, %sroughy from this tree at %s%s\n", m.tusd, others, orUnknown(m.commit), roughyVersion(b.roughy))
	if b.o.roughyBefore != "" {
		fmt.Fprintf(w, "- roughy-before: `%s`%s\n", b.o.roughyBefore, roughyVersion(b.o.roughyBefore))
	}
}

// markdown renders the report.
func (r *report) markdown(b *bench) string {
	var w strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&w, format, a...) }
	b.writeHeader(&w, r.title, "versitygw "+b.machine.versitygw+", ")
	p("- Method: each run starts a fresh server process on loopback with a fresh data dir; the client (this harness, same machine) sends %s PATCHes with Content-Length from a random source file with sendfile(2); the clock runs from the POST to the last 204. Server CPU = utime+stime from /proc/<pid>/stat over that window; peak RSS = VmHWM from /proc/<pid>/status. After each run the data are deleted and sync(2) flushes dirty pages before the next server starts. %d warm-up round(s) of every target ran first (listed, not in the medians).\n", benchproc.FormatSize(b.o.chunk), b.o.warmup)
	if b.o.scenario != "local" {
		p("- S3: one versitygw (posix backend, temp dir on the same disk) for every run; bucket emptied between runs; versitygw CPU is reported separately. roughy: `--storage s3 --s3-force-path-style` plus `%s`; tusd: `-s3-bucket -s3-endpoint`, its defaults otherwise (50 MiB parts, 10 concurrent part uploads, content hashes on).\n", orNone(b.o.roughyExtra))
		if b.o.scenario == "s3" {
			p("- (a) direct: %s parts, %d in flight, %s.\n", benchproc.FormatSize(b.o.direct.partSize), b.o.direct.parallel, payloadMode(b.o.direct.signed))
		}
	}
	if slices.ContainsFunc(r.samples, func(s sample) bool { return s.target == "roughy-tls" }) {
		p("- roughy-tls: the same node with `--tls-cert`/`--tls-key` (a self-signed ECDSA P-256 certificate; the client negotiates TLS 1.3). Over TLS the client cannot use sendfile(2): it encrypts the PATCH bodies in user space, on the same shared cores as the server.\n")
	}
	if len(r.missing) > 0 {
		p("- **Not measured**: %s\n", strings.Join(r.missing, "; "))
	}
	p("\n")

	if alt := r.targets("alt"); len(alt) > 0 {
		p("### Medians of the alternating runs (%s per upload, %d run(s) per target)\n\n", benchproc.FormatSize(b.o.size), b.o.runs)
		p("| target | ok runs | throughput MiB/s | server CPU-s/GiB | server peak RSS MiB | versitygw CPU-s/GiB |\n|---|---|---|---|---|---|\n")
		for _, t := range alt {
			md := r.medians(t, "alt")
			p("| %s | %d/%d | %s | %s | %s | %s |\n", b.label(t), md.ok, md.total, f1(md.ok > 0, md.mibps, "%.1f"),
				f1(md.hasCPU, md.cpu, "%.3f"), f1(md.hasRSS, md.rss, "%.1f"), f1(md.hasS3, md.s3, "%.3f"))
		}
		p("\n")
		r.ratios(b, &w)
		p("<details><summary>Every run, in the order run</summary>\n\n")
		p("| # | target | MiB/s | server CPU-s/GiB | peak RSS MiB | versitygw CPU-s/GiB | PATCH p50 / p99 | load avg at start | check |\n|---|---|---|---|---|---|---|---|---|\n")
		for i, s := range r.samples {
			if s.phase != "alt" && s.phase != "warm" {
				continue
			}
			r.row(&w, i+1, b, s)
		}
		p("\n</details>\n\n")
	}
	r.concurrent(&w, b)
	for _, e := range r.extra {
		p("%s\n", e)
	}
	var failed []string
	for _, s := range r.samples {
		if s.err != nil {
			failed = append(failed, fmt.Sprintf("- %s %s run %d: %s", b.label(s.target), s.phase, s.run, oneLine(s.err.Error())))
		}
	}
	if len(failed) > 0 {
		p("### Failed runs (not in the medians)\n\n%s\n\n", strings.Join(failed, "\n"))
	}
	return w.String()
}

// concurrent renders the table of the concurrent uploads, if any ran.
func (r *report) concurrent(w *strings.Builder, b *bench) {
	if len(r.targets("conc")) == 0 {
		return
	}
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("### Concurrent uploads\n\n")
	p("| target | uploads | aggregate MiB/s | server CPU-s/GiB | server peak RSS MiB | versitygw CPU-s/GiB | Redis CPU-s/GiB | PATCH p50 / p99 | load avg at start | check |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range r.samples {
		if s.phase != "conc" {
			continue
		}
		if s.err != nil {
			p("| %s | %d × %s | failed: %s | | | | | | %s | |\n", b.label(s.target), s.uploads, benchproc.FormatSize(s.bytes/int64(max(1, s.uploads))), oneLine(s.err.Error()), s.load1)
			continue
		}
		p("| %s | %d × %s | %.1f | %s | %s | %s | %s | %s / %s | %s | %s |\n", b.label(s.target), s.uploads, benchproc.FormatSize(s.bytes/int64(s.uploads)), s.mibps(),
			f1(s.cpu >= 0, perGiB(s.cpu, s.bytes), "%.3f"), f1(s.hwm >= 0, float64(s.hwm)/(1<<20), "%.1f"),
			f1(s.s3CPU >= 0, perGiB(s.s3CPU, s.bytes), "%.3f"), f1(s.auxCPU >= 0, perGiB(s.auxCPU, s.bytes), "%.3f"),
			ms(percentile(s.patches, 0.5)), ms(percentile(s.patches, 0.99)), s.load1, s.verify)
	}
	p("\n")
}

func (r *report) row(w *strings.Builder, i int, b *bench, s sample) {
	label := b.label(s.target)
	if s.phase == "warm" {
		label += " (warm-up, not in the medians)"
	}
	if s.err != nil {
		fmt.Fprintf(w, "| %d | %s | failed: %s | | | | | %s | |\n", i, label, oneLine(s.err.Error()), s.load1)
		return
	}
	fmt.Fprintf(w, "| %d | %s | %.1f | %s | %s | %s | %s / %s | %s | %s |\n", i, label, s.mibps(),
		f1(s.cpu >= 0, perGiB(s.cpu, s.bytes), "%.3f"), f1(s.hwm >= 0, float64(s.hwm)/(1<<20), "%.1f"),
		f1(s.s3CPU >= 0, perGiB(s.s3CPU, s.bytes), "%.3f"),
		ms(percentile(s.patches, 0.5)), ms(percentile(s.patches, 0.99)), s.load1, s.verify)
}

// ratios prints the comparisons the issues set targets for.
func (r *report) ratios(b *bench, w *strings.Builder) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	ro := r.medians("roughy", "alt")
	switch b.o.scenario {
	case "local":
		td := r.medians("tusd", "alt")
		if ro.ok > 0 && td.ok > 0 {
			p("- roughy/tusd throughput: **%.2f×** (target ≥ 0.90×)\n", ro.mibps/td.mibps)
			p("- roughy − tusd CPU: **%+.3f CPU-s/GiB** (target ≤ +0.5, one SHA-256 pass)\n\n", ro.cpu-td.cpu)
		}
		r.beforeAfter(w, ro)
		if tl := r.medians("roughy-tls", "alt"); ro.ok > 0 && tl.ok > 0 {
			p("- roughy over TLS / plain HTTP throughput: **%.2f×**; server CPU **%+.3f CPU-s/GiB**\n\n", tl.mibps/ro.mibps, tl.cpu-ro.cpu)
		}
	case "s3":
		a, c := r.medians("direct", "alt"), r.medians("tusd", "alt")
		r.beforeAfter(w, ro)
		if ro.ok > 0 && a.ok > 0 {
			p("- b/a throughput: **%.2f** (target ≥ 0.90)\n", ro.mibps/a.mibps)
		}
		if ro.ok > 0 && c.ok > 0 {
			p("- b/c throughput: **%.2f** (target ≥ 1.25)\n", ro.mibps/c.mibps)
			if c.cpu > 0 {
				p("- b/c proxy CPU per GiB: **%.2f** (target ≤ 0.50)\n", ro.cpu/c.cpu)
			}
		}
		p("\n")
	}
}

// beforeAfter compares this build with the roughy-before target's.
func (r *report) beforeAfter(w *strings.Builder, ro medians) {
	if bf := r.medians("roughy-before", "alt"); ro.ok > 0 && bf.ok > 0 {
		fmt.Fprintf(w, "- roughy now / before: throughput **%.2f×**, server CPU **%+.3f CPU-s/GiB**\n", ro.mibps/bf.mibps, ro.cpu-bf.cpu)
	}
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// roughyVersion is `roughy version` on one line (it says which SHA-256
// implementation and CPU features are in use).
func roughyVersion(bin string) string {
	if bin == "" {
		return ""
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return ""
	}
	return " (`roughy version`: " + strings.Join(strings.Fields(string(out)), " ") + ")"
}

func orNone(s string) string {
	if s == "" {
		return "no other flag"
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown commit"
	}
	return s
}

func commandLine() string {
	args := make([]string, 0, len(os.Args))
	args = append(args, "go run ./bench/cmd/ingestbench")
	for _, a := range os.Args[1:] {
		// An empty argument (-results "") would vanish from the line.
		if a == "" {
			a = `""`
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}
