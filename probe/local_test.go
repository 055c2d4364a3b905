package probe

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"

	"github.com/roughy/ingest/sessionstore/bolt"
)

// completeUpload stores data as a finished upload in st and sink's
// directory, the way the proxy leaves it: asset ready, probe job queued.
func completeUpload(t *testing.T, st sessionstore.Store, sinkDir string, data []byte) string {
	t.Helper()
	ctx := t.Context()
	id := apikey.NewID()
	key := "uploads/" + id
	if err := os.MkdirAll(filepath.Join(sinkDir, "uploads"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sinkDir, key), data, 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	size := int64(len(data))
	err := st.CreateUpload(ctx,
		sessionstore.Session{ID: id, Account: "acme", AssetID: id, Length: size, CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		sessionstore.Asset{ID: id, Account: "acme", SessionID: id, Type: "video", State: sessionstore.StateUploading,
			SizeBytes: size, StorageKey: key, CreatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	l, err := st.AcquireLease(ctx, id, 30*time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: 0, NewOffset: size, Length: -1,
		Complete: true, SHA256: strings.Repeat("0", 64)}); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestWorkerWithLocalStore runs a worker on the embedded store's durable
// queue and a real LocalSink: a media upload gets its duration, a text file
// ends in the dead-letter list with no duration.
func TestWorkerWithLocalStore(t *testing.T) {
	media, err := os.ReadFile(makeMedia(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	st, err := bolt.New(filepath.Join(dir, "roughy.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sink, err := pipeline.NewLocalSink(dir)
	if err != nil {
		t.Fatal(err)
	}
	mediaID := completeUpload(t, st, dir, media)
	textID := completeUpload(t, st, dir, []byte("minutes of the meeting, not a movie\n"))

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	w := NewWorker(Config{Consumer: "t-0", Block: 200 * time.Millisecond}, st, SinkInput(sink, time.Hour))
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	waitProbed(t, st, mediaID, textID, 30*time.Second)
	// Nothing is left to claim.
	if job, err := st.ClaimProbe(t.Context(), "t-check", 0, time.Hour); err == nil {
		t.Errorf("queue still holds %+v", job)
	}
}

// waitProbed waits up to within for the workers on st to give the media
// asset its duration and to park the text asset in the dead-letter list
// with ffprobe's reason and no duration, and returns the dead-letter list.
func waitProbed(t *testing.T, st sessionstore.Store, mediaID, textID string, within time.Duration) []sessionstore.DeadProbe {
	t.Helper()
	deadline := time.Now().Add(within)
	var dead []sessionstore.DeadProbe
	for {
		a, err := st.Asset(t.Context(), mediaID)
		if err != nil {
			t.Fatal(err)
		}
		dead, err = st.DeadProbes(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		parked := slices.IndexFunc(dead, func(d sessionstore.DeadProbe) bool { return d.AssetID == textID })
		if a.DurationSeconds != "" && parked >= 0 {
			checkTwoSeconds(t, a.DurationSeconds)
			if !strings.Contains(dead[parked].Reason, "Invalid data") {
				t.Errorf("dead reason %q, want ffprobe's Invalid data", dead[parked].Reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: media duration %q, dead list %+v", within, a.DurationSeconds, dead)
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
	return dead
}
