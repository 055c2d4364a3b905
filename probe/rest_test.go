package probe

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// TestWorkerRestsWhileBusy: while the process says it is busy, a worker
// rests busyRest times its last probe's duration before the next claim;
// once it is no longer busy, the rest ends and the next job goes at once.
func TestWorkerRestsWhileBusy(t *testing.T) {
	const probeTook = 300 * time.Millisecond
	bin := filepath.Join(t.TempDir(), "ffprobe")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nsleep 0.3\necho 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	st := newFakeStore()
	for i := range 3 {
		id := strconv.Itoa(i)
		st.assets[id] = sessionstore.Asset{ID: id, StorageKey: "in"}
		st.jobs = append(st.jobs, sessionstore.ProbeJob{ID: id, AssetID: id})
	}
	var busy atomic.Bool
	busy.Store(true)
	w := NewWorker(Config{Consumer: "t", Runner: Runner{Path: bin}, Busy: busy.Load}, st, pathInput)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	settled := func(what string) time.Time {
		t.Helper()
		select {
		case <-st.settled:
			return time.Now()
		case <-time.After(20 * time.Second):
			t.Fatalf("%s not settled in 20s", what)
		}
		return time.Time{}
	}

	first := settled("job 0")
	second := settled("job 1")
	if gap, least := second.Sub(first), busyRest*probeTook; gap < least {
		t.Fatalf("busy: job 1 settled %s after job 0, want a rest of at least %s", gap, least)
	}
	busy.Store(false)
	flipped := time.Now()
	third := settled("job 2")
	if gap, rest := third.Sub(flipped), busyRest*probeTook; gap >= rest {
		t.Fatalf("no longer busy: job 2 settled %s later, the whole rest (%s) was taken", gap, rest)
	}
}
