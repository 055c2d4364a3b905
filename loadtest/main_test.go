package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/tusclient"
)

func TestWithHost(t *testing.T) {
	got := withHost("http://127.0.0.1:8081/api/v1/assets/upload-resumable/0199", "http://127.0.0.1:8083/api/v1/assets/upload-resumable")
	if want := "http://127.0.0.1:8083/api/v1/assets/upload-resumable/0199"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"2GiB": 2 << 30, "64MiB": 64 << 20, "5M": 5 << 20, "17": 17} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q): got %d, %v, want %d", in, got, err, want)
		}
	}
	if _, err := parseSize("x"); err == nil {
		t.Error(`parseSize("x"): got nil error`)
	}
}

func TestBackoff(t *testing.T) {
	var got []time.Duration
	for n := 1; n <= 6; n++ {
		got = append(got, backoff(n))
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestFmtSize(t *testing.T) {
	for n, want := range map[int64]string{2 << 30: "2GiB", 64 << 20: "64MiB", 512 << 10: "512KiB", 1000: "1000B"} {
		if got := fmtSize(n); got != want {
			t.Errorf("fmtSize(%d): got %q, want %q", n, got, want)
		}
	}
}

func TestSummarizeCountsFailures(t *testing.T) {
	var b strings.Builder
	c := config{urls: []string{"http://x"}, size: 1 << 20, chunk: 1 << 20, workers: 2}
	var good outcome
	good.elapsed = time.Second
	good.retried = []string{reason(fmt.Errorf("x: %w", &tusclient.StatusError{Op: "PATCH at 0", Status: 423, Body: "locked"})), reason(errTest), "423"}
	good.lat[verbPATCH] = []time.Duration{time.Second}
	summarize(&b, c, []outcome{good, {err: errTest}, {err: fmt.Errorf("x: %w", errCorrupt)}}, time.Second, 0)
	out := b.String()
	for _, want := range []string{"1 ok, 2 failed, 1 corrupt", "1.0 MiB/s", "error ×1:       boom", "PATCH   latency: p50 1s  p95 1s", "resumed after:  423 ×2, transport ×1"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

type testErr string

func (e testErr) Error() string { return string(e) }

const errTest = testErr("boom")
