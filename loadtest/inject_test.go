package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRampDelay(t *testing.T) {
	for _, tc := range []struct {
		w, n int
		ramp time.Duration
		want time.Duration
	}{{0, 4, 8 * time.Second, 0}, {1, 4, 8 * time.Second, 2 * time.Second}, {3, 4, 8 * time.Second, 6 * time.Second}, {3, 4, 0, 0}} {
		if got := rampDelay(tc.w, tc.n, tc.ramp); got != tc.want {
			t.Errorf("rampDelay(%d, %d, %v): got %v, want %v", tc.w, tc.n, tc.ramp, got, tc.want)
		}
	}
}

func TestStartAt(t *testing.T) {
	if got := startAt(10, 4); got != 2500*time.Millisecond {
		t.Errorf("startAt(10, 4/s): got %v, want 2.5s", got)
	}
	if got := startAt(10, 0); got != 0 {
		t.Errorf("startAt(10, no rate): got %v, want 0", got)
	}
}

// TestDispatchPacesUploads: at 20 uploads per second the sixth upload is
// handed out no earlier than 250 ms after the start.
func TestDispatchPacesUploads(t *testing.T) {
	jobs := make(chan int)
	var late int64
	start := time.Now()
	go dispatch(context.Background(), 6, 20, start, jobs, &late)
	var got []int
	for i := range jobs {
		got = append(got, i)
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Errorf("6 uploads at 20/s dispatched in %v, want at least 250ms", el)
	}
	if len(got) != 6 || got[5] != 5 {
		t.Errorf("dispatched %v, want 0..5 in order", got)
	}
}

// TestAborterRateAndRange: a rate of 0.25 aborts about a quarter of the
// PATCHes, each after 1..n-1 bytes, and the same seed makes the same
// choices.
func TestAborterRateAndRange(t *testing.T) {
	a, b := newAborter(0.25, 7, 3), newAborter(0.25, 7, 3)
	cuts := 0
	for range 4000 {
		cut, ok := a.cut(100)
		cut2, ok2 := b.cut(100)
		if cut != cut2 || ok != ok2 {
			t.Fatalf("same seed: got (%d %v) and (%d %v)", cut, ok, cut2, ok2)
		}
		if ok {
			cuts++
			if cut < 1 || cut > 99 {
				t.Fatalf("cut after %d of 100 bytes, want 1..99", cut)
			}
		}
	}
	if cuts < 850 || cuts > 1150 {
		t.Errorf("%d of 4000 PATCHes cut at rate 0.25, want about 1000", cuts)
	}
	if _, ok := newAborter(0, 7, 3).cut(100); ok {
		t.Error("rate 0 cut a PATCH")
	}
}

// TestCutReaderAt: a PATCH body read through cutReaderAt ends with
// errAborted after exactly limit bytes.
func TestCutReaderAt(t *testing.T) {
	src := bytes.Repeat([]byte("x"), 1000)
	got, err := io.ReadAll(io.NewSectionReader(cutReaderAt{bytes.NewReader(src), 300}, 0, 1000))
	if !errors.Is(err, errAborted) || len(got) != 300 {
		t.Errorf("read %d bytes, %v; want 300 and errAborted", len(got), err)
	}
}

func TestAssetURL(t *testing.T) {
	got, ok := assetURL("http://h:1/api/v1/assets/upload-resumable", "http://h:2/api/v1/assets/upload-resumable/0199ab")
	if want := "http://h:1/api/v1/assets/0199ab"; !ok || got != want {
		t.Errorf("got %q %v, want %q", got, ok, want)
	}
	if _, ok := assetURL("http://h:1/files/", "http://h:1/files/abc"); ok {
		t.Error("tusd endpoint: got an asset URL, want none")
	}
}

func TestProgressLine(t *testing.T) {
	var c counters
	c.running.Store(3)
	c.done.Store(5)
	c.failed.Store(1)
	c.aborts.Store(2)
	c.sent.Store(20 << 20)
	got := progressLine(10*time.Second, &c, 8)
	want := "loadtest 10s  running 3  done 5/8  failed 1  corrupt 0  aborts 2  20 MiB  2.0 MiB/s"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestVerifierFlagsCorruptAsset: an asset whose sha256 is not the
// source's is errCorrupt; one that has no sha256 yet is asked again.
func TestVerifierFlagsCorruptAsset(t *testing.T) {
	src := bytes.Repeat([]byte("abc"), 1000)
	var calls atomic.Int32
	answer := `{"sha256":"00","size_bytes":3000}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// A failed write shows as the verifier's error.
		if calls.Add(1) == 1 {
			_, _ = io.WriteString(w, `{"state":"uploading"}`)
			return
		}
		_, _ = io.WriteString(w, answer)
	}))
	defer srv.Close()
	v := &verifier{hc: srv.Client(), src: bytes.NewReader(src), size: 3000, timeout: 5 * time.Second}
	lat, err := v.check(context.Background(), srv.URL, http.Header{}, 0)
	if !errors.Is(err, errCorrupt) || len(lat) != 2 {
		t.Errorf("got %v after %d GETs, want errCorrupt after 2", err, len(lat))
	}
	sum, _ := v.sourceSum(0)
	answer = `{"sha256":"` + strings.ToLower(hexOf(sum)) + `","size_bytes":3000}`
	if _, err := v.check(context.Background(), srv.URL, http.Header{}, 0); err != nil {
		t.Errorf("matching asset: %v", err)
	}
}

// TestVerifierDownloads: with download on, an asset whose sha256 is right
// but whose download_url serves other bytes (storage holds it short) is
// errCorrupt; one that serves the source passes.
func TestVerifierDownloads(t *testing.T) {
	src := bytes.Repeat([]byte("abc"), 1000)
	served := src[:2999]
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	v := &verifier{hc: srv.Client(), src: bytes.NewReader(src), size: 3000, timeout: 5 * time.Second, download: true}
	sum, _ := v.sourceSum(0)
	// A failed write shows as the verifier's error.
	mux.HandleFunc("/asset", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"sha256":"`+hexOf(sum)+`","size_bytes":3000,"download_url":"`+srv.URL+`/file"}`)
	})
	mux.HandleFunc("/file", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(served) })
	if _, err := v.check(context.Background(), srv.URL+"/asset", http.Header{}, 0); !errors.Is(err, errCorrupt) {
		t.Errorf("download one byte short: got %v, want errCorrupt", err)
	}
	served = src
	if _, err := v.check(context.Background(), srv.URL+"/asset", http.Header{}, 0); err != nil {
		t.Errorf("download of the source: %v", err)
	}
}
