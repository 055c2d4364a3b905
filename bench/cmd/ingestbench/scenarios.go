package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
)

// alternate runs every target once per round, round after round, so that
// page-cache and thermal drift hit all of them alike. Before the rounds,
// -warmup rounds run the same way but stay out of the medians: on this VM
// the first pass over page-cache memory the guest never touched costs
// several times more CPU than later passes (seen as a slow first run of
// every target, tusd included).
func (b *bench) alternate(ctx context.Context, rep *report, targets []string, n int, size int64) {
	rounds := []struct {
		phase string
		count int
	}{{"warm", b.o.warmup}, {"alt", b.o.runs}}
	for _, rd := range rounds {
		for r := range rd.count {
			for _, t := range targets {
				if ctx.Err() != nil {
					return
				}
				s := b.runTarget(ctx, t, rd.phase, r+1, n, size)
				logSample(s)
				rep.samples = append(rep.samples, s)
			}
		}
	}
}

func (b *bench) concurrency(ctx context.Context, rep *report, targets []string, n int, size int64) {
	if n <= 0 {
		return
	}
	for _, t := range targets {
		if ctx.Err() != nil {
			return
		}
		s := b.runTarget(ctx, t, "conc", 1, n, size)
		logSample(s)
		rep.samples = append(rep.samples, s)
	}
}

func logSample(s sample) {
	if s.err != nil {
		slog.Error("run failed", "target", s.target, "phase", s.phase, "run", s.run, "err", s.err)
		return
	}
	slog.Info("run done", "target", s.target, "phase", s.phase, "run", s.run,
		"MiB/s", fmt.Sprintf("%.1f", s.mibps()),
		"cpu_s_per_GiB", fmt.Sprintf("%.3f", perGiB(s.cpu, s.bytes)),
		"peak_rss_MiB", fmt.Sprintf("%.1f", float64(s.hwm)/(1<<20)),
		"s3_cpu_s_per_GiB", fmt.Sprintf("%.3f", perGiB(s.s3CPU, s.bytes)),
		"check", s.verify)
}

// localScenario: roughy's embedded default vs tusd's file store.
func (b *bench) localScenario(ctx context.Context) (*report, error) {
	rep := &report{scenario: "local", title: "Embedded default: roughy vs tusd v2.9.1 file store"}
	targets := b.targetsOr("roughy", "tusd")
	if slices.Contains(targets, "roughy-tls") && !slices.Contains(targets, "tusd") {
		rep.title = "Embedded default over TLS (--tls-cert) vs plain HTTP"
	}
	if err := b.checkTargets(ctx, rep, targets); err != nil {
		return rep, err
	}
	b.alternate(ctx, rep, b.available(rep, targets), 1, b.o.size)
	b.concurrency(ctx, rep, b.available(rep, splitList(b.o.concTargets)), b.o.conc, b.o.concSize)
	return rep, nil
}

// s3Scenario: direct multipart (a), roughy --storage s3 (b) and
// tusd's S3 store (c) against one versitygw.
func (b *bench) s3Scenario(ctx context.Context) (*report, error) {
	rep := &report{scenario: "s3", title: "S3 storage: direct multipart (a) vs roughy --storage s3 (b) vs tusd v2.9.1 S3 store (c), one versitygw"}
	if err := b.startS3(ctx); err != nil {
		return rep, err
	}
	defer b.s3.stop()
	targets := b.targetsOr("direct", "roughy", "tusd")
	if err := b.checkTargets(ctx, rep, targets); err != nil {
		return rep, err
	}
	b.alternate(ctx, rep, b.available(rep, targets), 1, b.o.size)
	b.concurrency(ctx, rep, b.available(rep, splitList(b.o.concTargets)), b.o.conc, b.o.concSize)
	return rep, nil
}

// checkTargets builds roughy if it is a target; when it cannot be built,
// the run goes on without it and the report says so.
func (b *bench) checkTargets(ctx context.Context, rep *report, targets []string) error {
	for _, t := range targets {
		switch t {
		case "roughy", "roughy-fleet", "roughy-tls":
			if _, err := b.roughyBinary(ctx); err != nil {
				rep.missing = append(rep.missing, fmt.Sprintf("roughy: %v", err))
			}
		case "tusd":
			if _, err := os.Stat(b.o.tusdBin); err != nil {
				rep.missing = append(rep.missing, fmt.Sprintf("tusd: %v", err))
			}
		case "roughy-before":
			if _, err := os.Stat(b.o.roughyBefore); err != nil {
				rep.missing = append(rep.missing, fmt.Sprintf("roughy-before: %v", err))
			}
		case "direct":
		default:
			return fmt.Errorf("ingestbench: unknown target %q", t)
		}
	}
	return nil
}

// available drops the targets that checkTargets found missing.
func (b *bench) available(rep *report, targets []string) []string {
	var out []string
	for _, t := range targets {
		name, _, _ := strings.Cut(t, "-")
		missing := false
		for _, m := range rep.missing {
			if strings.HasPrefix(m, name+":") {
				missing = true
			}
		}
		if !missing {
			out = append(out, t)
		}
	}
	return out
}
