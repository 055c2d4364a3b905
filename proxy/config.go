package proxy

import (
	"log/slog"
	"strings"
	"time"
)

// DefaultConfig returns the configuration `roughy serve` starts from: its
// flags' defaults are these values.
//
// A setting that can be turned off is off at 0 (MinBodyRate,
// MaxAccountBodies, KeyCacheTTL, DownloadStallTimeout, MinFreeSpace,
// MaxConns, MaxConnsPerIP, QuotaDefaults); a negative value is off too.
// A setting that cannot be off (a lease, an expiry, a timeout a request
// needs) takes its value here when it is 0 or negative.
func DefaultConfig() Config {
	return Config{
		UploadExpiry: 24 * time.Hour,
		CORSOrigins:  []string{"*"},
		DownloadTTL:  time.Hour,
		// Short enough that a request after a node died gets the upload
		// within tus-js-client's retry schedule (0, 3, 5, 10, 20 s);
		// renewed every third of it while a PATCH streams.
		LeaseTTL: 10 * time.Second,
		// tus-js-client's first retries come after 0 and 1 s: a takeover
		// must finish well within its 9 s of default retries.
		TakeoverWait:         2 * time.Second,
		BodyIdleTimeout:      time.Minute,
		MinBodyRate:          1 << 10,
		MinBodyRateWindow:    30 * time.Second,
		MaxAccountBodies:     64,
		MinFreeSpace:         1 << 30,
		KeyCacheTTL:          10 * time.Second,
		DownloadStallTimeout: time.Minute,
	}
}

// settled returns c with the settings that cannot be off filled in from
// DefaultConfig where they are 0 or negative, and those that can be off
// at 0 when negative, so that the rest of the package tests one thing.
func (c Config) settled() Config {
	d := DefaultConfig()
	for _, f := range []struct{ v, def *time.Duration }{
		{&c.UploadExpiry, &d.UploadExpiry},
		{&c.DownloadTTL, &d.DownloadTTL},
		{&c.LeaseTTL, &d.LeaseTTL},
		{&c.TakeoverWait, &d.TakeoverWait},
		{&c.BodyIdleTimeout, &d.BodyIdleTimeout},
		{&c.MinBodyRateWindow, &d.MinBodyRateWindow},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	c.MinBodyRate = max(c.MinBodyRate, 0)
	c.MaxAccountBodies = max(c.MaxAccountBodies, 0)
	c.KeyCacheTTL = max(c.KeyCacheTTL, 0)
	c.DownloadStallTimeout = max(c.DownloadStallTimeout, 0)
	c.MinFreeSpace = max(c.MinFreeSpace, 0)
	c.MaxConns = max(c.MaxConns, 0)
	c.MaxConnsPerIP = max(c.MaxConnsPerIP, 0)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.Telemetry == nil {
		c.Telemetry = NewTelemetry(nil)
	}
	return c
}
