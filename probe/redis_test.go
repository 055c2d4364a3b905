package probe

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/pipeline"

	"github.com/roughy/ingest/sessionstore/redis"
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
	st, err := redis.New(t.Context(), url)
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
		wg.Go(func() {
			if err := w.Run(ctx); err != nil {
				t.Errorf("worker %d: Run: %v", i, err)
			}
		})
	}
	defer func() {
		cancel()
		wg.Wait()
	}()

	if dead := waitProbed(t, st, mediaID, textID, 45*time.Second); len(dead) != 1 {
		t.Errorf("dead list %+v, want the text file only", dead)
	}
}
