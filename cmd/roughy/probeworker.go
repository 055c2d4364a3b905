package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/probe"
)

// probeFlags tune the ffprobe workers of serve and probe-worker: cfg,
// each worker's configuration, is bound to the --probe-* and --ffprobe
// flags.
type probeFlags struct {
	workers int
	cfg     probe.Config
}

func addProbeFlags(f *flag.FlagSet, defWorkers int) *probeFlags {
	p := &probeFlags{workers: defWorkers, cfg: probe.DefaultConfig()}
	f.IntVar(&p.workers, "probe-workers", p.workers, "ffprobe workers in this process (0: none)")
	f.DurationVar(&p.cfg.Runner.Timeout, "probe-timeout", p.cfg.Runner.Timeout, "limit of one ffprobe run")
	f.IntVar(&p.cfg.MaxAttempts, "probe-attempts", p.cfg.MaxAttempts, "failed probes of an asset before it is parked as dead")
	f.StringVar(&p.cfg.Runner.Path, "ffprobe", p.cfg.Runner.Path, "ffprobe binary")
	return p
}

// start runs the workers until ctx ends; wg tracks them. hooks, when set,
// sets each worker's hooks into the process: how each job was settled
// (metrics), whether uploads are streaming (serve).
func (p *probeFlags) start(ctx context.Context, wg *sync.WaitGroup, store probe.Store, sink pipeline.Sink, presignTTL time.Duration, log *slog.Logger, hooks func(*probe.Config)) {
	if p.workers > 0 {
		if _, err := exec.LookPath(p.cfg.Runner.Path); err != nil {
			// Not fatal: uploads work without it; jobs retry, then park.
			log.Warn("roughy: ffprobe not found, durations will stay null (apt-get install -y ffmpeg)", "ffprobe", p.cfg.Runner.Path, "err", err)
		}
	}
	input := probe.SinkInput(sink, presignTTL)
	for i := range p.workers {
		cfg := p.cfg
		cfg.Consumer, cfg.Logger, cfg.Probed = probe.Consumer(i), log, probedEvents(store)
		if hooks != nil {
			hooks(&cfg)
		}
		w := probe.NewWorker(cfg, store, input)
		wg.Go(func() {
			if err := w.Run(ctx); err != nil {
				log.Error("roughy: probe worker stopped", "consumer", cfg.Consumer, "err", err)
			}
		})
	}
}

// probeWorker runs only ffprobe workers against the selected store and
// storage, for fleets that keep probing off the upload nodes (run serve
// with --probe-workers 0 there). It stops on SIGINT/SIGTERM; a probe cut
// short is handed out again by the queue.
func (c cli) probeWorker(ctx context.Context, args []string) error {
	fl := newFlagSet("probe-worker", "probe-worker [flags]", c.stderr)
	sf := addStoreFlags(fl)
	kf := addSinkFlags(fl, sf.dataDir)
	pf := addProbeFlags(fl, 2)
	log := newLogger(fl, c.stderr)
	if _, err := parseArgs(fl, args, c.lookup); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if pf.workers < 1 {
		return fmt.Errorf("%w: --probe-workers must be at least 1", errUsage)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	store, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	sink, _, err := kf.open(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	pf.start(ctx, &wg, store, sink, kf.s3.PresignTTL, log, nil)
	log.Info("roughy probe workers running", "workers", pf.workers, "sessions", *sf.sessions, "storage", *kf.storage)
	fmt.Fprintf(c.stdout, "roughy probe-worker running %d workers\n", pf.workers)
	<-ctx.Done()
	stop() // a second signal kills the process at once
	wg.Wait()
	log.Info("roughy probe workers stopped")
	return nil
}
