package proxy

import (
	"testing"
	"time"
)

// TestConfigOff checks the one meaning of "off": a setting that can be
// off is off at 0 (and when negative), not replaced by its default; one
// that cannot be off takes DefaultConfig's value at 0.
func TestConfigOff(t *testing.T) {
	d := DefaultConfig()
	got := Config{MinBodyRate: -1, DownloadStallTimeout: -time.Second}.settled()
	for _, f := range []struct {
		name string
		got  int64
	}{
		{"MinBodyRate", got.MinBodyRate},
		{"MaxAccountBodies", int64(got.MaxAccountBodies)},
		{"KeyCacheTTL", int64(got.KeyCacheTTL)},
		{"DownloadStallTimeout", int64(got.DownloadStallTimeout)},
		{"MinFreeSpace", got.MinFreeSpace},
		{"MaxConns", int64(got.MaxConns)},
	} {
		if f.got != 0 {
			t.Errorf("%s: got %d from a zero or negative value, want 0 (off)", f.name, f.got)
		}
	}
	for _, f := range []struct {
		name      string
		got, want time.Duration
	}{
		{"UploadExpiry", got.UploadExpiry, d.UploadExpiry},
		{"DownloadTTL", got.DownloadTTL, d.DownloadTTL},
		{"LeaseTTL", got.LeaseTTL, 10 * time.Second},
		{"TakeoverWait", got.TakeoverWait, d.TakeoverWait},
		{"BodyIdleTimeout", got.BodyIdleTimeout, d.BodyIdleTimeout},
		{"MinBodyRateWindow", got.MinBodyRateWindow, d.MinBodyRateWindow},
	} {
		if f.got != f.want || f.got <= 0 {
			t.Errorf("%s: got %v from 0, want the default %v", f.name, f.got, f.want)
		}
	}
	// The defaults go through unchanged.
	if s := d.settled(); s.MinBodyRate != 1<<10 || s.MaxAccountBodies != 64 || s.KeyCacheTTL != 10*time.Second ||
		s.DownloadStallTimeout != time.Minute || s.LeaseTTL != 10*time.Second {
		t.Errorf("DefaultConfig settled: got %+v", s)
	}
}

// TestAccountStreamsOff: a cap of 0 is no cap.
func TestAccountStreamsOff(t *testing.T) {
	a := accountStreams{max: 0, n: map[string]int{}}
	for i := range 100 {
		if _, ok := a.acquire("acme"); !ok {
			t.Fatalf("body %d refused with a cap of 0 (off)", i)
		}
	}
	a = accountStreams{max: 1, n: map[string]int{}}
	if _, ok := a.acquire("acme"); !ok {
		t.Fatal("first body refused with a cap of 1")
	}
	if _, ok := a.acquire("acme"); ok {
		t.Fatal("second body accepted with a cap of 1")
	}
}
