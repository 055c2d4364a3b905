package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/worker"
)

// Store is what a worker needs of the session store's probe queue.
// bolt.Store and redis.Store (sessionstore/bolt, sessionstore/redis)
// implement it.
type Store interface {
	ClaimProbe(ctx context.Context, consumer string, block, reclaimAfter time.Duration) (sessionstore.ProbeJob, error)
	AckProbe(ctx context.Context, job sessionstore.ProbeJob, durationSeconds string) error
	RetryProbe(ctx context.Context, job sessionstore.ProbeJob, delay time.Duration, reason string) error
	DeadProbe(ctx context.Context, job sessionstore.ProbeJob, reason string) error
	Asset(ctx context.Context, id string) (sessionstore.Asset, error)
}

// InputFunc returns what ffprobe should read for an asset (a local path or
// a URL) and a function to call once ffprobe is done with it.
type InputFunc func(ctx context.Context, a sessionstore.Asset) (input string, release func(), err error)

// Objects is what SinkInput needs of a pipeline.Sink.
type Objects interface {
	Open(ctx context.Context, key string) (pipeline.Object, error)
	URL(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// SinkInput resolves an asset's stored object through sink: a URL valid for
// ttl when the sink gives one (S3: presigned GET, which ffprobe reads with
// range requests), else the object's local file path.
func SinkInput(sink Objects, ttl time.Duration) InputFunc {
	return func(ctx context.Context, a sessionstore.Asset) (string, func(), error) {
		key := a.StorageKey
		if key == "" {
			key = "uploads/" + a.ID // the proxy's object key convention
		}
		u, err := sink.URL(ctx, key, ttl)
		if err != nil {
			return "", nil, fmt.Errorf("probe: url of %s: %w", key, err)
		}
		if u != "" {
			return u, func() {}, nil
		}
		obj, err := sink.Open(ctx, key)
		if err != nil {
			return "", nil, fmt.Errorf("probe: open %s: %w", key, err)
		}
		p := obj.Path()
		if p == "" {
			obj.Close()
			return "", nil, fmt.Errorf("probe: %s has neither a URL nor a local path", key)
		}
		// Keep the object open while ffprobe reads it.
		return p, func() { obj.Close() }, nil
	}
}

// Config tunes a Worker. Start from DefaultConfig; a zero value takes the
// default shown.
type Config struct {
	// Consumer names this worker in the queue (default: Consumer(0)).
	Consumer string
	Runner   Runner
	// MaxAttempts is how many failed runs park a job as dead (5).
	MaxAttempts int
	// BaseDelay is the first retry delay, doubled on each attempt (1s),
	// up to MaxDelay (5m).
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// Block is how long one claim waits for a job (2s).
	Block time.Duration
	// ReclaimAfter hands a job claimed by a worker that died out again
	// (Runner timeout + 30s).
	ReclaimAfter time.Duration
	Logger       *slog.Logger
	// Probed, when set, is told each settled probe: the asset with its
	// duration, or the failure that parked the job (the
	// asset.probed webhook event). It is called before the job is settled:
	// an error leaves the job claimed, to be probed again.
	Probed func(ctx context.Context, a sessionstore.Asset, failure string) error
	// Settled, when set, is told how each job was settled: "done",
	// "retry" or "dead" (metrics; it must not block).
	Settled func(outcome string)
	// Busy, when set, says whether the process is taking uploads now;
	// while it is, a worker rests between probes (see busyRest).
	Busy func() bool
}

// While uploads stream into this process, a worker rests busyRest times as
// long as its last probe took (at most maxBusyRest) before it claims the
// next job, so probes of up to 1.1 s take at most a tenth of each
// worker's time (a longer one rests the 10 s cap). An
// ffprobe run costs about 0.12 CPU-s even on a file it rejects at once; at
// nice 19 two workers still took a quarter of the rate of 32 clients
// sending 256 KiB uploads to a 2-core node, by the cores they filled
// whenever a request waited on the disk. The rest ends as soon as no
// upload streams, so the queue drains at full speed after a burst, and
// under a steady load probes go on at the reduced pace instead of
// stopping.
const (
	busyRest    = 9
	maxBusyRest = 10 * time.Second
	busyPoll    = 50 * time.Millisecond
)

// DefaultConfig returns the worker `roughy serve` and `roughy
// probe-worker` run: their --probe-* and --ffprobe flags' defaults are
// these values. Consumer and ReclaimAfter are left empty: NewWorker
// derives them.
func DefaultConfig() Config {
	return Config{
		Runner:      Runner{Path: "ffprobe", Timeout: time.Minute},
		MaxAttempts: 5,
		BaseDelay:   time.Second,
		MaxDelay:    5 * time.Minute,
		Block:       2 * time.Second,
	}
}

// withDefaults fills the settings that are empty, 0 or negative from
// DefaultConfig: none of them can be off.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Consumer == "" {
		c.Consumer = Consumer(0)
	}
	if c.Runner.Path == "" {
		c.Runner.Path = d.Runner.Path
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	for _, f := range []struct{ v, def *time.Duration }{
		{&c.BaseDelay, &d.BaseDelay}, {&c.MaxDelay, &d.MaxDelay}, {&c.Block, &d.Block}, {&c.Runner.Timeout, &d.Runner.Timeout},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	if c.ReclaimAfter <= 0 {
		c.ReclaimAfter = c.Runner.Timeout + 30*time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Settled == nil {
		c.Settled = func(string) {}
	}
	return c
}

// Consumer returns a consumer name unique to this process and index i, so
// that a restarted worker's old claims are reclaimed, not resumed.
func Consumer(i int) string {
	host, err := os.Hostname()
	if err != nil {
		host = "roughy"
	}
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(i)
}

// Worker takes probe jobs one at a time until its context ends.
type Worker struct {
	cfg   Config
	store Store
	input InputFunc
	retry worker.Retry
}

// NewWorker returns a worker over store, resolving inputs with input.
func NewWorker(cfg Config, store Store, input InputFunc) *Worker {
	cfg = cfg.withDefaults()
	return &Worker{cfg: cfg, store: store, input: input,
		retry: worker.Retry{Base: cfg.BaseDelay, Max: cfg.MaxDelay, MaxAttempts: cfg.MaxAttempts}}
}

// Delay is the retry delay after a job's attempt-th failure (0-based):
// BaseDelay·2^attempt, capped at MaxDelay.
func (w *Worker) Delay(attempt int) time.Duration { return w.retry.Delay(attempt) }

// Run claims and probes jobs until ctx ends, then returns nil. A probe cut
// short by ctx is left claimed; the queue hands it out again after
// ReclaimAfter.
func (w *Worker) Run(ctx context.Context) error {
	loop := worker.Loop[sessionstore.ProbeJob]{Name: "probe", Consumer: w.cfg.Consumer,
		Block: w.cfg.Block, ReclaimAfter: w.cfg.ReclaimAfter, Claim: w.store.ClaimProbe, Handle: w.handleAndRest,
		Unsettled: "probe: job not settled", Attrs: func(j sessionstore.ProbeJob) []any { return []any{"asset", j.AssetID} },
		Logger: w.cfg.Logger.With("consumer", w.cfg.Consumer)}
	loop.Run(ctx)
	return nil
}

// handleAndRest is Handle, then the rest a busy process asks for.
func (w *Worker) handleAndRest(ctx context.Context, job sessionstore.ProbeJob) error {
	start := time.Now()
	err := w.Handle(ctx, job)
	if w.cfg.Busy != nil {
		w.rest(ctx, min(busyRest*time.Since(start), maxBusyRest))
	}
	return err
}

// rest waits up to d while the process is busy.
func (w *Worker) rest(ctx context.Context, d time.Duration) {
	until := time.Now().Add(d)
	t := time.NewTicker(busyPoll)
	defer t.Stop()
	for w.cfg.Busy() && time.Now().Before(until) {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Handle probes one claimed job and settles it: Ack with the duration
// ("" when the input has none), Retry after a transient failure, Dead after
// a permanent one or too many attempts. It returns an error only when the
// job could not be settled (it stays claimed and will be reclaimed).
func (w *Worker) Handle(ctx context.Context, job sessionstore.ProbeJob) error {
	log := w.cfg.Logger.With("consumer", w.cfg.Consumer, "asset", job.AssetID, "attempts", job.Attempts)
	// Settle even if ctx ends right after ffprobe finished: a result we
	// have is worth recording.
	settle := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	}

	a, err := w.store.Asset(ctx, job.AssetID)
	if errors.Is(err, sessionstore.ErrNotFound) {
		// Deleted after its upload completed: nothing to probe. Ack drops
		// the job; a store that refuses to ack for a gone asset gets it
		// parked instead, so it is not handed out forever.
		sctx, cancel := settle()
		defer cancel()
		log.Info("probe: asset gone, dropping job")
		if err := w.store.AckProbe(sctx, job, ""); err == nil {
			w.cfg.Settled("done")
			return nil
		}
		return w.dead(sctx, job, "asset not found (deleted)")
	}
	if err != nil {
		return fmt.Errorf("probe: asset %s: %w", job.AssetID, err)
	}

	dur, err := w.probe(ctx, a)
	if err != nil && ctx.Err() != nil {
		// Shutting down: leave the job claimed for another worker.
		return ctx.Err()
	}
	sctx, cancel := settle()
	defer cancel()
	switch {
	case err == nil:
		a.DurationSeconds = dur
		if err := w.probed(sctx, a, ""); err != nil {
			return err
		}
		if err := w.store.AckProbe(sctx, job, dur); err != nil {
			return fmt.Errorf("probe: ack %s: %w", job.AssetID, err)
		}
		w.cfg.Settled("done")
		log.Info("probe: done", "duration_seconds", dur)
		return nil
	case errors.Is(err, ErrNotMedia):
		log.Warn("probe: not media, parking job", "reason", err.Error())
		return w.parked(sctx, job, a, err.Error())
	}
	return w.failed(sctx, log, job, a, err)
}

// failed settles a job whose probe failed: retried after the back-off
// delay, or parked as dead once it was tried MaxAttempts times.
func (w *Worker) failed(ctx context.Context, log *slog.Logger, job sessionstore.ProbeJob, a sessionstore.Asset, err error) error {
	delay, dead := w.retry.After(job.Attempts, time.Time{}, time.Now())
	if dead {
		reason := fmt.Sprintf("gave up after %d attempts: %v", job.Attempts+1, err)
		log.Error("probe: failed, parking job", "reason", reason)
		return w.parked(ctx, job, a, reason)
	}
	log.Warn("probe: failed, will retry", "reason", err.Error(), "retry_in", delay)
	if err := w.store.RetryProbe(ctx, job, delay, err.Error()); err != nil {
		return fmt.Errorf("probe: retry %s: %w", job.AssetID, err)
	}
	w.cfg.Settled("retry")
	return nil
}

func (w *Worker) probe(ctx context.Context, a sessionstore.Asset) (string, error) {
	input, release, err := w.input(ctx, a)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrTransient, err)
	}
	defer release()
	return w.cfg.Runner.Duration(ctx, input)
}

func (w *Worker) dead(ctx context.Context, job sessionstore.ProbeJob, reason string) error {
	if err := w.store.DeadProbe(ctx, job, reason); err != nil {
		return fmt.Errorf("probe: park %s: %w", job.AssetID, err)
	}
	w.cfg.Settled("dead")
	return nil
}

// parked tells Probed, then parks a job whose probe failed for good.
func (w *Worker) parked(ctx context.Context, job sessionstore.ProbeJob, a sessionstore.Asset, reason string) error {
	if err := w.probed(ctx, a, reason); err != nil {
		return err
	}
	return w.dead(ctx, job, reason)
}

// probed tells Probed BEFORE the result is recorded, so that no crash in
// between loses what it queues; an error leaves the job claimed (it is
// probed again once reclaimed).
func (w *Worker) probed(ctx context.Context, a sessionstore.Asset, failure string) error {
	if w.cfg.Probed == nil {
		return nil
	}
	if err := w.cfg.Probed(ctx, a, failure); err != nil {
		return fmt.Errorf("probe: tell %s: %w", a.ID, err)
	}
	return nil
}
