package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
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

// probeFlags tune the ffprobe workers of serve and probe-worker.
type probeFlags struct {
	workers  *int
	timeout  *time.Duration
	attempts *int
	ffprobe  *string
}

func addProbeFlags(f *flag.FlagSet, defWorkers int) *probeFlags {
	return &probeFlags{
		workers:  f.Int("probe-workers", defWorkers, "ffprobe workers in this process (0: none)"),
		timeout:  f.Duration("probe-timeout", time.Minute, "limit of one ffprobe run"),
		attempts: f.Int("probe-attempts", 5, "failed probes of an asset before it is parked as dead"),
		ffprobe:  f.String("ffprobe", "ffprobe", "ffprobe binary"),
	}
}

// start runs the workers until ctx ends; wg tracks them. settled, when
// set, is told how each job was settled (metrics).
func (p *probeFlags) start(ctx context.Context, wg *sync.WaitGroup, store probe.Store, sink pipeline.Sink, presignTTL time.Duration, log *slog.Logger, settled func(string)) {
	if *p.workers > 0 {
		if _, err := exec.LookPath(*p.ffprobe); err != nil {
			// Not fatal: uploads work without it; jobs retry, then park.
			log.Warn("roughy: ffprobe not found, durations will stay null (apt-get install -y ffmpeg)", "ffprobe", *p.ffprobe, "err", err)
		}
	}
	input := probe.SinkInput(sink, presignTTL)
	for i := range *p.workers {
		w := probe.NewWorker(probe.Config{
			Consumer:    probe.Consumer(i),
			Runner:      probe.Runner{Path: *p.ffprobe, Timeout: *p.timeout},
			MaxAttempts: *p.attempts,
			Logger:      log,
			Probed:      probedEvents(store),
			Settled:     settled,
		}, store, input)
		wg.Go(func() { w.Run(ctx) })
	}
}

func (c cli) serve(ctx context.Context, args []string) error {
	fl := newFlagSet("serve", "serve [flags]", c.stderr)
	listen := fl.String("listen", ":8080", "address to serve on")
	metricsListen := fl.String("metrics-listen", "", "serve /metrics on this address of its own (e.g. 127.0.0.1:9090) instead of on --listen")
	tlsCert := fl.String("tls-cert", "",
		"PEM certificate (chain) file: serve HTTPS on --listen, TLS 1.2 and later; with --tls-key; both are read again when they change or on SIGHUP")
	tlsKey := fl.String("tls-key", "", "PEM private key file of --tls-cert")
	downloadStall := fl.Duration("download-stall-timeout", time.Minute,
		"close a connection whose response write makes no progress for this long (a client that stopped reading; 0: never)")
	publicURL := fl.String("public-url", "", "base URL for Location and download_url (default: from the request)")
	sf := addStoreFlags(fl)
	kf := addSinkFlags(fl, sf.dataDir)
	pf := addProbeFlags(fl, 2)
	wf := addWebhookFlags(fl)
	uploadExpiry := fl.Duration("upload-expiry", 24*time.Hour, "abandoned uploads expire after this")
	shutdownTimeout := fl.Duration("shutdown-timeout", 30*time.Second, "SIGTERM drain limit")
	corsOrigins := fl.String("cors-origins", "*", "allowed browser origins, comma separated (* = any)")
	apiKeys := fl.String("api-keys", "", "static keys: account=key,… (e.g. acme=rk_live_…)")
	signingKey := fl.String("signing-key", "",
		"HMAC key of local download URLs (default: generated once into <data-dir>/signing-key; "+
			"with --storage s3, downloads are presigned by S3 and a per-process key is used unless set)")
	downloadTTL := fl.Duration("download-ttl", time.Hour, "validity of download_url")
	leaseTTL := fl.Duration("lease-ttl", 0, "lease of a PATCH on its upload without renewal (0: proxy default)")
	takeoverWait := fl.Duration("takeover-wait", 2*time.Second, "how long a PATCH or DELETE waits for the request holding its upload to let go before answering 423")
	janitorEvery := fl.Duration("janitor-interval", time.Minute, "how often expired uploads are freed")
	bodyIdle := fl.Duration("body-idle-timeout", time.Minute, "longest wait for the next byte of a request body")
	minBodyRate := sizeFlag(fl, "min-body-rate", 1<<10,
		"least throughput of an upload body, bytes per second averaged over --min-body-rate-window; a slower body is cut off with 408 (0: no minimum)")
	minBodyRateWindow := fl.Duration("min-body-rate-window", 30*time.Second, "window --min-body-rate is averaged over")
	maxAccountPatches := fl.Int("max-patches-per-account", 64,
		"upload bodies (PATCH, POST with data) one account may stream to this node at once; past it 429 with Retry-After (0: no cap)")
	minFreeSpace := sizeFlag(fl, "min-free-space", 1<<30,
		"/readyz fails while the data dir has less free space (local storage; 0: no floor)")
	keyCacheTTL := fl.Duration("key-cache-ttl", 10*time.Second,
		"how long a checked API key is trusted without asking the store; a revoked key works that much longer (0: no cache)")
	maxConns := fl.Int("max-conns", 0, "open client connections at most; one more is answered 503 (0: half the file descriptor limit)")
	maxConnsPerIP := fl.Int("max-conns-per-ip", 0,
		"open connections of one client IP at most, and in-flight requests of one client behind --trusted-proxies (0: a quarter of --max-conns, at most 1024)")
	trustedProxies := fl.String("trusted-proxies", "",
		"proxies (IPs or CIDRs, comma separated) whose X-Forwarded-For names the client for --max-conns-per-ip")
	quotas := addQuotaDefaultFlags(fl)
	otlpEndpoint := fl.String("otlp-endpoint", "",
		"OTLP/HTTP collector base URL for traces, e.g. http://127.0.0.1:4318 (default: OTEL_EXPORTER_OTLP_ENDPOINT; neither: no tracing)")
	log := newLogger(fl, c.stderr)
	if _, err := parseArgs(fl, args, c.lookup); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	staticKeys, err := parseAPIKeys(*apiKeys)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	trusted, err := parsePrefixes(*trustedProxies)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return fmt.Errorf("%w: --tls-cert and --tls-key go together (both or neither)", errUsage)
	}
	if *maxConns < 0 || *maxConnsPerIP < 0 {
		return fmt.Errorf("%w: --max-conns and --max-conns-per-ip must not be negative", errUsage)
	}
	fds, err := raiseFDLimit()
	if err != nil {
		log.Warn("roughy: file descriptor limit", "err", err)
	}
	if fds == 0 {
		fds = 1024 // unknown: assume the usual soft limit
	}
	if *maxConns == 0 {
		*maxConns = connLimit(fds)
	}
	if *maxConnsPerIP == 0 {
		*maxConnsPerIP = perIPLimit(*maxConns)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Telemetry comes first: the store and the sink report to it.
	tp, err := newTracerProvider(ctx, *otlpEndpoint, c.lookup)
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
	kf.observer = tel
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
	key, err := loadSigningKey(*signingKey, *kf.storage == "local", *sf.dataDir)
	if err != nil {
		return err
	}

	var certs *proxy.Certificates
	if *tlsCert != "" {
		if certs, err = proxy.LoadCertificates(*tlsCert, *tlsKey, log); err != nil {
			return fmt.Errorf("roughy: %w", err)
		}
	}

	cfg := proxy.Config{
		PublicURL:       strings.TrimRight(*publicURL, "/"),
		UploadExpiry:    *uploadExpiry,
		CORSOrigins:     splitList(*corsOrigins),
		SigningKey:      key,
		DownloadTTL:     *downloadTTL,
		LeaseTTL:        *leaseTTL,
		TakeoverWait:    *takeoverWait,
		BodyIdleTimeout: *bodyIdle,
		KeyCacheTTL:     *keyCacheTTL,
		StaticKeys:      make([]sessionstore.Key, 0, len(staticKeys)),
		Logger:          log,
		MaxConns:        *maxConns,
		MaxConnsPerIP:   *maxConnsPerIP,
		TrustedProxies:  trusted,
		WebhookTargets:  wf.targets(),
		QuotaDefaults:   quotas.limits(),
		Telemetry:       tel,
		TLS:             certs,
	}
	cfg.DownloadStallTimeout = *downloadStall
	if cfg.DownloadStallTimeout <= 0 {
		cfg.DownloadStallTimeout = -1 // the proxy's "never"
	}
	for _, kv := range staticKeys {
		cfg.StaticKeys = append(cfg.StaticKeys, apikey.Record(kv[0], kv[1]))
	}
	if cfg.KeyCacheTTL <= 0 {
		cfg.KeyCacheTTL = -1 // the proxy's "disabled"; its 0 means the default
	}
	// The flags' 0 is "off"; the proxy's 0 is its default, -1 is off.
	cfg.MinBodyRate, cfg.MinBodyRateWindow = *minBodyRate, *minBodyRateWindow
	if cfg.MinBodyRate <= 0 {
		cfg.MinBodyRate = -1
	}
	cfg.MaxAccountBodies = *maxAccountPatches
	cfg.MetricsElsewhere = *metricsListen != ""
	if cfg.MaxAccountBodies <= 0 {
		cfg.MaxAccountBodies = -1
	}
	if *kf.storage == "local" {
		cfg.MinFreeSpace = *minFreeSpace
	}
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

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("roughy: listen: %w", err)
	}
	if *metricsListen != "" {
		mln, err := net.Listen("tcp", *metricsListen)
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
		"sessions", *sf.sessions, "probe_workers", *pf.workers, "cpu", pipeline.CPUFeatures(),
		"tls", certs != nil, "fd_limit", fds, "max_conns", *maxConns, "max_conns_per_ip", *maxConnsPerIP)
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
	wg.Go(func() { srv.RunJanitor(bg, *janitorEvery) })
	pf.start(bg, &wg, store, sink, *kf.presignTTL, log, tel.ProbeSettled)
	wf.start(bg, &wg, store, srv.WebhookAsset, srv.WebhookVerify, log)

	var serveErr error
	select {
	case serveErr = <-served:
		if serveErr != nil {
			serveErr = fmt.Errorf("roughy: serve: %w", serveErr)
		}
		// The public listener failed: stop the rest (the metrics
		// listener among it) so that the goroutines end.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *shutdownTimeout)
		_ = srv.Shutdown(sctx)
		cancel()
	case <-ctx.Done():
		stop() // a second signal kills the process without waiting for the drain
		log.Info("roughy draining", "timeout", *shutdownTimeout)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *shutdownTimeout)
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
