package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

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
	if *pf.workers < 1 {
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
	pf.start(ctx, &wg, store, sink, *kf.presignTTL, log, nil)
	log.Info("roughy probe workers running", "workers", *pf.workers, "sessions", *sf.sessions, "storage", *kf.storage)
	fmt.Fprintf(c.stdout, "roughy probe-worker running %d workers\n", *pf.workers)
	<-ctx.Done()
	stop() // a second signal kills the process at once
	wg.Wait()
	log.Info("roughy probe workers stopped")
	return nil
}
