package probe

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
)

// TestRedisReclaimAndDeadLetter runs workers on the Redis stream queue: a
// job claimed by a consumer that died (it claimed and never settled) is
// reclaimed and probed by another worker, and a non-media file ends in the
// dead-letter list with duration_seconds left empty.
func TestRedisReclaimAndDeadLetter(t *testing.T) {
	media, err := os.ReadFile(makeMedia(t))
	if err != nil {
		t.Fatal(err)
	}
	url := testsvc.StartRedis(t)
	st, err := sessionstore.NewRedis(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dir := t.TempDir()
	sink, err := pipeline.NewLocalSink(dir)
	if err != nil {
		t.Fatal(err)
	}

	mediaID := completeUpload(t, st, dir, media)
	// A worker claims the media job and is killed before settling it.
	job, err := st.ClaimProbe(t.Context(), "killed-worker", time.Second, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if job.AssetID != mediaID {
		t.Fatalf("claimed %+v, want the media job", job)
	}
	textID := completeUpload(t, st, dir, []byte("a grocery list\n"))

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for i := range 2 {
		w := NewWorker(Config{Consumer: "survivor-" + string(rune('a'+i)), Block: 200 * time.Millisecond,
			ReclaimAfter: 2 * time.Second}, st, SinkInput(sink, time.Hour))
		wg.Go(func() { w.Run(ctx) })
	}
	defer func() {
		cancel()
		wg.Wait()
	}()

	deadline := time.Now().Add(45 * time.Second)
	for {
		a, err := st.Asset(t.Context(), mediaID)
		if err != nil {
			t.Fatal(err)
		}
		dead, err := st.DeadProbes(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		parked := slices.IndexFunc(dead, func(d sessionstore.DeadProbe) bool { return d.AssetID == textID })
		if a.DurationSeconds != "" && parked >= 0 {
			checkTwoSeconds(t, a.DurationSeconds)
			if !strings.Contains(dead[parked].Reason, "Invalid data") {
				t.Errorf("dead reason %q", dead[parked].Reason)
			}
			if len(dead) != 1 {
				t.Errorf("dead list %+v, want the text file only", dead)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 45s: media duration %q, dead %+v", a.DurationSeconds, dead)
		}
		time.Sleep(100 * time.Millisecond)
	}
	text, err := st.Asset(t.Context(), textID)
	if err != nil {
		t.Fatal(err)
	}
	if text.DurationSeconds != "" {
		t.Errorf("non-media duration %q, want none", text.DurationSeconds)
	}
}
