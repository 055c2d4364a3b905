package main

//go:generate go test -run ^TestConfigurationDoc$ -update-config-doc .

import (
	"flag"
	"fmt"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/proxy"
	"github.com/roughy/ingest/sessionstore"
)

// serveFlags is everything `roughy serve` is configured with: each
// package's Config, started from its DefaultConfig and bound field by
// field to a flag (and so to its environment twin), plus the settings of
// serve itself.
type serveFlags struct {
	listen, metricsListen string
	tlsCert, tlsKey       string
	apiKeys, signingKey   string
	otlpEndpoint          string
	shutdownTimeout       time.Duration
	janitorEvery          time.Duration

	proxy   proxy.Config
	store   *storeFlags
	sink    *sinkFlags
	probe   *probeFlags
	webhook *webhookFlags
}

// addServeFlags defines serve's flags on fl.
func addServeFlags(fl *flag.FlagSet) *serveFlags {
	f := &serveFlags{
		listen: ":8080", shutdownTimeout: 30 * time.Second, janitorEvery: time.Minute,
		proxy: proxy.DefaultConfig(),
	}
	fl.StringVar(&f.listen, "listen", f.listen, "address to serve on")
	fl.StringVar(&f.metricsListen, "metrics-listen", f.metricsListen,
		"serve /metrics on this address of its own (e.g. 127.0.0.1:9090) instead of on --listen")
	fl.BoolVar(&f.proxy.Profiling, "pprof", f.proxy.Profiling,
		"serve Go's runtime profiles (/debug/pprof/, with block and mutex sampling) on --metrics-listen, never on --listen")
	fl.StringVar(&f.tlsCert, "tls-cert", f.tlsCert,
		"PEM certificate (chain) file: serve HTTPS on --listen, TLS 1.2 and later; with --tls-key; both are read again when they change or on SIGHUP")
	fl.StringVar(&f.tlsKey, "tls-key", f.tlsKey, "PEM private key file of --tls-cert")
	f.store = addStoreFlags(fl)
	f.sink = addSinkFlags(fl, f.store.dataDir)
	f.probe = addProbeFlags(fl, 2)
	f.webhook = addWebhookFlags(fl)
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", f.shutdownTimeout, "SIGTERM drain limit")
	fl.DurationVar(&f.janitorEvery, "janitor-interval", f.janitorEvery, "how often expired uploads are freed")
	fl.StringVar(&f.apiKeys, "api-keys", f.apiKeys, "static keys: account=key,… (e.g. acme=rk_live_…)")
	fl.StringVar(&f.signingKey, "signing-key", f.signingKey,
		"HMAC key of local download URLs (default: generated once into <data-dir>/signing-key; "+
			"with --storage s3, downloads are presigned by S3 and a per-process key is used unless set)")
	fl.StringVar(&f.otlpEndpoint, "otlp-endpoint", f.otlpEndpoint,
		"OTLP/HTTP collector base URL for traces, e.g. http://127.0.0.1:4318 (default: OTEL_EXPORTER_OTLP_ENDPOINT; neither: no tracing)")
	addProxyFlags(fl, &f.proxy)
	return f
}

// addProxyFlags binds the flags of proxy.Config's fields to c.
func addProxyFlags(fl *flag.FlagSet, c *proxy.Config) {
	fl.DurationVar(&c.DownloadStallTimeout, "download-stall-timeout", c.DownloadStallTimeout,
		"close a connection whose response write makes no progress for this long (a client that stopped reading; 0: never)")
	fl.StringVar(&c.PublicURL, "public-url", c.PublicURL, "base URL for Location and download_url (default: from the request)")
	fl.DurationVar(&c.UploadExpiry, "upload-expiry", c.UploadExpiry, "abandoned uploads expire after this")
	fl.Var(listFlag{&c.CORSOrigins}, "cors-origins", "allowed browser origins, comma separated (* = any)")
	fl.DurationVar(&c.DownloadTTL, "download-ttl", c.DownloadTTL, "validity of download_url")
	fl.DurationVar(&c.LeaseTTL, "lease-ttl", c.LeaseTTL, "lease of a PATCH on its upload without renewal (0: the default)")
	fl.DurationVar(&c.TakeoverWait, "takeover-wait", c.TakeoverWait,
		"how long a PATCH or DELETE waits for the request holding its upload to let go before answering 423")
	fl.DurationVar(&c.BodyIdleTimeout, "body-idle-timeout", c.BodyIdleTimeout, "longest wait for the next byte of a request body")
	sizeVar(fl, &c.MinBodyRate, "min-body-rate",
		"least throughput of an upload body, bytes per second averaged over --min-body-rate-window; a slower body is cut off with 408 (0: no minimum)")
	fl.DurationVar(&c.MinBodyRateWindow, "min-body-rate-window", c.MinBodyRateWindow, "window --min-body-rate is averaged over")
	fl.IntVar(&c.MaxAccountBodies, "max-patches-per-account", c.MaxAccountBodies,
		"upload bodies (PATCH, POST with data) one account may stream to this node at once; past it 503 with Retry-After (0: no cap)")
	sizeVar(fl, &c.MinFreeSpace, "min-free-space",
		"/readyz fails while the data dir has less free space (local storage; 0: no floor)")
	fl.DurationVar(&c.KeyCacheTTL, "key-cache-ttl", c.KeyCacheTTL,
		"how long a checked API key is trusted without asking the store; a revoked key works that much longer (0: no cache)")
	fl.IntVar(&c.MaxConns, "max-conns", c.MaxConns,
		"open client connections at most; one more is answered 503 (0: half the file descriptor limit)")
	fl.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", c.MaxConnsPerIP,
		"open connections of one client IP at most, and in-flight requests of one client behind --trusted-proxies (0: a quarter of --max-conns, at most 1024)")
	fl.Var(prefixesFlag{&c.TrustedProxies, parsePrefixes}, "trusted-proxies",
		"proxies (IPs or CIDRs, comma separated) whose X-Forwarded-For names the client for --max-conns-per-ip")
	addQuotaDefaultFlags(fl, &c.QuotaDefaults)
}

// check refuses combinations the flags' types cannot, once parsed.
func (f *serveFlags) check() error {
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return fmt.Errorf("%w: --tls-cert and --tls-key go together (both or neither)", errUsage)
	}
	if f.proxy.Profiling && f.metricsListen == "" {
		return fmt.Errorf("%w: --pprof serves on --metrics-listen only: give that address too", errUsage)
	}
	if f.proxy.MaxConns < 0 || f.proxy.MaxConnsPerIP < 0 {
		return fmt.Errorf("%w: --max-conns and --max-conns-per-ip must not be negative", errUsage)
	}
	keys, err := parseAPIKeys(f.apiKeys)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	f.proxy.StaticKeys = make([]sessionstore.Key, 0, len(keys))
	for _, kv := range keys {
		f.proxy.StaticKeys = append(f.proxy.StaticKeys, apikey.Record(kv[0], kv[1]))
	}
	f.proxy.MetricsElsewhere = f.metricsListen != ""
	f.proxy.WebhookTargets = f.webhook.cfg.Targets
	if *f.sink.storage != "local" {
		f.proxy.MinFreeSpace = 0 // the floor is of the data dir's disk
	}
	return nil
}

// connLimits fills MaxConns and MaxConnsPerIP where they are 0 from fds,
// the process's file descriptor limit.
func (f *serveFlags) connLimits(fds uint64) {
	if f.proxy.MaxConns == 0 {
		f.proxy.MaxConns = connLimit(fds)
	}
	if f.proxy.MaxConnsPerIP == 0 {
		f.proxy.MaxConnsPerIP = perIPLimit(f.proxy.MaxConns)
	}
}
