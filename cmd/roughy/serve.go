package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/probe"
	"github.com/roughy/ingest/proxy"
	"github.com/roughy/ingest/sessionstore"

	"github.com/roughy/ingest/sessionstore/redis"
)

// serve runs the server until a signal, then drains it.
//
//nolint:gocyclo,funlen // Start-up then drain, in order: each step's defer (store, admin socket, traces, signals) must unwind in reverse at return, which one function keeps visible.
func (c cli) serve(ctx context.Context, args []string) error {
	fl := newFlagSet("serve", "serve [flags]", c.stderr)
	f := addServeFlags(fl)
	sf, kf, pf, wf := f.store, f.sink, f.probe, f.webhook
	log := newLogger(fl, c.stderr)
	if _, err := parseArgs(fl, args, c.lookup); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if err := f.check(); err != nil {
		return err
	}
	fds, err := raiseFDLimit()
	if err != nil {
		log.Warn("roughy: file descriptor limit", "err", err)
	}
	if fds == 0 {
		fds = 1024 // unknown: assume the usual soft limit
	}
	f.connLimits(fds)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Telemetry comes first: the store and the sink report to it.
	tp, err := newTracerProvider(ctx, f.otlpEndpoint, c.lookup)
	if err != nil {
		return err
	}
	var tel *proxy.Telemetry
	if tp != nil {
		defer func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
			defer cancel()
			if err := tp.Shutdown(fctx); err != nil {
				log.Warn("roughy: flush traces", "err", err)
			}
		}()
		tel = proxy.NewTelemetry(tp)
	} else {
		tel = proxy.NewTelemetry(nil)
	}
	store, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	if r, ok := store.(*redis.Store); ok {
		r.SetObserver(tel)
	}
	kf.s3.Observer = tel
	sink, pool, err := kf.open(ctx)
	if err != nil {
		return err
	}
	if sf.embedded() {
		// `roughy keys` cannot open the store while this process holds it.
		stopAdmin, err := serveAdmin(*sf.dataDir, store, log)
		if err != nil {
			log.Warn("roughy: no admin socket: stop the server to run `roughy keys`", "err", err)
		} else {
			defer stopAdmin()
		}
	}
	key, err := loadSigningKey(f.signingKey, *kf.storage == "local", *sf.dataDir)
	if err != nil {
		return err
	}

	var certs *proxy.Certificates
	if f.tlsCert != "" {
		if certs, err = proxy.LoadCertificates(f.tlsCert, f.tlsKey, log); err != nil {
			return fmt.Errorf("roughy: %w", err)
		}
	}

	cfg := f.proxy
	cfg.SigningKey, cfg.Logger, cfg.Telemetry, cfg.TLS = key, log, tel, certs
	if pool != nil {
		cfg.Buffers = pool // for /metrics
	}
	srv := proxy.New(cfg, store, pipeline.New(sink))

	// The janitor, the probe workers and the revocation watcher outlive
	// the signal: they stop once in-flight requests drained.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	var wg sync.WaitGroup
	// Watching before the static keys are checked, so that no revocation
	// falls between the two.
	wg.Go(func() { srv.RunKeyRevocations(bg) })
	if err := srv.SeedStaticKeys(ctx); err != nil {
		return fmt.Errorf("roughy: %w", err)
	}
	if err := bootstrapDevKey(ctx, store, sf.embedded(), *sf.dataDir, c.stdout); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("roughy: listen: %w", err)
	}
	if f.metricsListen != "" {
		mln, err := net.Listen("tcp", f.metricsListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("roughy: metrics listen: %w", err)
		}
		wg.Go(func() {
			if err := srv.ServeMetrics(mln); err != nil {
				log.Warn("roughy: serve metrics", "err", err)
			}
		})
		log.Info("roughy serving metrics", "addr", mln.Addr().String())
		fmt.Fprintf(c.stdout, "roughy metrics on %s\n", mln.Addr())
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("roughy serving", "addr", ln.Addr().String(), "storage", *kf.storage,
		"sessions", *sf.sessions, "probe_workers", pf.workers, "cpu", pipeline.CPUFeatures(),
		"tls", certs != nil, "fd_limit", fds, "max_conns", cfg.MaxConns, "max_conns_per_ip", cfg.MaxConnsPerIP)
	// Tests and scripts wait for this line.
	fmt.Fprintf(c.stdout, "roughy listening on %s\n", ln.Addr())

	if certs != nil {
		// Registered before anyone could send it: SIGHUP's default
		// action ends the process.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		wg.Go(func() { watchCertificates(bg, certs, hup) })
	}
	wg.Go(func() { srv.RunJanitor(bg, f.janitorEvery) })
	pf.start(bg, &wg, store, sink, kf.s3.PresignTTL, log, func(c *probe.Config) {
		c.Settled, c.Busy = tel.ProbeSettled, srv.Streaming
	})
	wf.start(bg, &wg, store, srv.WebhookAsset, srv.WebhookVerify, log)

	var serveErr error
	select {
	case serveErr = <-served:
		if serveErr != nil {
			serveErr = fmt.Errorf("roughy: serve: %w", serveErr)
		}
		// The public listener failed: stop the rest (the metrics
		// listener among it) so that the goroutines end.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.shutdownTimeout)
		_ = srv.Shutdown(sctx)
		cancel()
	case <-ctx.Done():
		stop() // a second signal kills the process without waiting for the drain
		log.Info("roughy draining", "timeout", f.shutdownTimeout)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.shutdownTimeout)
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("roughy: shutdown", "err", err)
		}
		cancel()
		if err := <-served; err != nil {
			log.Warn("roughy: serve", "err", err)
		}
	}
	stopBG()
	wg.Wait()
	log.Info("roughy stopped")
	return serveErr
}

// certCheckPeriod is how often the TLS files are checked for a change.
const certCheckPeriod = 2 * time.Second

// watchCertificates reloads the TLS certificate when its files change,
// and at once on hup (SIGHUP), until ctx ends. Open connections keep the
// certificate they were made with.
func watchCertificates(ctx context.Context, certs *proxy.Certificates, hup <-chan os.Signal) {
	t := time.NewTicker(certCheckPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			_ = certs.Reload(true)
		case <-t.C:
			_ = certs.Reload(false)
		}
	}
}

// bootstrapDevKey, in the embedded default with no key at all (static
// keys are stored first), creates a development key, prints it and writes
// it to <data-dir>/dev-api-key.
func bootstrapDevKey(ctx context.Context, store sessionstore.Store, embedded bool, dataDir string, stdout io.Writer) error {
	if !embedded {
		return nil
	}
	keys, err := store.Keys(ctx)
	if err != nil {
		return fmt.Errorf("roughy: list keys: %w", err)
	}
	if len(keys) > 0 {
		return nil
	}
	secret, rec := apikey.New("dev")
	path := filepath.Join(dataDir, "dev-api-key")
	// Write the file first: a key that is stored but lost is useless.
	if err := writeFileAtomic(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("roughy: dev key: %w", err)
	}
	if err := store.CreateKey(ctx, rec); err != nil {
		return fmt.Errorf("roughy: store dev key: %w", err)
	}
	fmt.Fprintf(stdout, "roughy dev API key (account \"dev\", saved to %s): %s\n", path, secret)
	return nil
}

// loadSigningKey returns the HMAC key for local download URLs: the flag's
// value when set; with local storage, the key in <data-dir>/signing-key,
// generated on first start; otherwise (S3 downloads are presigned by S3)
// a random per-process key.
func loadSigningKey(flagValue string, local bool, dataDir string) ([]byte, error) {
	if flagValue != "" {
		if len(flagValue) < 16 {
			return nil, fmt.Errorf("%w: --signing-key must be at least 16 characters", errUsage)
		}
		return []byte(flagValue), nil
	}
	if !local {
		return randomKey(), nil
	}
	path := filepath.Join(dataDir, "signing-key")
	b, err := os.ReadFile(path)
	if err == nil {
		k := strings.TrimSpace(string(b))
		if len(k) < 16 {
			return nil, fmt.Errorf("roughy: %s: key too short", path)
		}
		return []byte(k), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("roughy: signing key: %w", err)
	}
	k := hex.EncodeToString(randomKey())
	if err := writeFileAtomic(path, []byte(k+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("roughy: signing key: %w", err)
	}
	return []byte(k), nil
}

func randomKey() []byte {
	b := make([]byte, 32)
	rand.Read(b) // never fails on Linux
	return b
}

// writeFileAtomic writes data to path through a synced temp file and a
// rename, so a crash leaves either no file or the whole one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
