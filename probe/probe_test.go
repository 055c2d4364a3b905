package probe

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
)

var (
	mediaOnce sync.Once
	mediaDir  string
	mediaPath string
	mediaErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if mediaDir != "" {
		os.RemoveAll(mediaDir)
	}
	os.Exit(code)
}

// makeMedia renders a 2-second MP4 (video + audio) with ffmpeg's lavfi,
// once per test run. Tests must not modify it.
func makeMedia(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg not installed (apt-get install -y ffmpeg)")
	}
	mediaOnce.Do(func() {
		if mediaDir, mediaErr = os.MkdirTemp("", "probe-media-"); mediaErr != nil {
			return
		}
		mediaPath = filepath.Join(mediaDir, "out.mp4")
		cmd := exec.Command("ffmpeg", "-v", "error", "-y",
			"-f", "lavfi", "-i", "testsrc=duration=2:size=160x120:rate=10",
			"-f", "lavfi", "-i", "sine=duration=2", "-shortest", mediaPath)
		if b, err := cmd.CombinedOutput(); err != nil {
			mediaErr = fmt.Errorf("ffmpeg: %v: %s", err, b)
		}
	})
	if mediaErr != nil {
		t.Fatal(mediaErr)
	}
	return mediaPath
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var threeDecimals = regexp.MustCompile(`^\d+\.\d{3}$`)

func checkTwoSeconds(t *testing.T, got string) {
	t.Helper()
	if !threeDecimals.MatchString(got) {
		t.Fatalf("duration %q, want digits with exactly 3 decimals", got)
	}
	f, _ := strconv.ParseFloat(got, 64)
	if f < 1.9 || f > 2.1 {
		t.Fatalf("duration %q, want about 2.000", got)
	}
}

func TestFormatDuration(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"2.000000\n", "2.000"},
		{"3782.4127\n", "3782.413"},
		{"0.0005", "0.001"},
		{"12", "12.000"},
		{"N/A\n", ""},
		{"", ""},
		{"-1.5", ""},
		{"nan", ""},
		{"2.5\n7.0\n", "2.500"},
	} {
		if got := formatDuration(tc.in); got != tc.want {
			t.Errorf("formatDuration(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRunnerMediaFile(t *testing.T) {
	got, err := Runner{}.Duration(t.Context(), makeMedia(t))
	if err != nil {
		t.Fatal(err)
	}
	checkTwoSeconds(t, got)
}

func TestRunnerNotMedia(t *testing.T) {
	junk := make([]byte, 64<<10)
	for i := range junk {
		junk[i] = byte(i*7 + i/13)
	}
	for name, data := range map[string][]byte{
		"text":   []byte("this is a shopping list, not a film\n"),
		"binary": junk,
		"empty":  nil,
	} {
		t.Run(name, func(t *testing.T) {
			got, err := Runner{}.Duration(t.Context(), writeFile(t, "upload", data))
			if !errors.Is(err, ErrNotMedia) {
				t.Fatalf("got %q, %v; want ErrNotMedia", got, err)
			}
		})
	}
}

func TestRunnerMissingInputIsTransient(t *testing.T) {
	_, err := Runner{}.Duration(t.Context(), filepath.Join(t.TempDir(), "gone"))
	if !errors.Is(err, ErrTransient) {
		t.Fatalf("got %v, want ErrTransient", err)
	}
}

// TestRunnerURL has ffprobe read a served MP4 over HTTP, the way it reads a
// presigned S3 URL, and checks the signature-like query stays out of errors.
func TestRunnerURL(t *testing.T) {
	media := makeMedia(t)
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.URL.Path != "/obj" {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, media)
	}))
	defer srv.Close()

	got, err := Runner{}.Duration(t.Context(), srv.URL+"/obj?X-Amz-Signature=secret")
	if err != nil {
		t.Fatal(err)
	}
	checkTwoSeconds(t, got)

	_, err = Runner{}.Duration(t.Context(), srv.URL+"/missing?X-Amz-Signature=secret")
	if !errors.Is(err, ErrTransient) {
		t.Fatalf("404: got %v, want ErrTransient", err)
	}
	if regexp.MustCompile("secret").MatchString(err.Error()) {
		t.Fatalf("error %q leaks the URL's signature", err)
	}
}

func TestRunnerTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		// Never answer until the test ends.
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	start := time.Now()
	_, err := Runner{Timeout: time.Second}.Duration(t.Context(), srv.URL+"/stalled")
	if !errors.Is(err, ErrTransient) {
		t.Fatalf("got %v, want ErrTransient", err)
	}
	// Generous for a loaded machine; without the timeout it would hang.
	if el := time.Since(start); el > 15*time.Second {
		t.Fatalf("took %s with a 1s timeout", el)
	}
}

// fakeStore is a hand-written in-memory probe queue.
type fakeStore struct {
	mu      sync.Mutex
	jobs    []sessionstore.ProbeJob
	assets  map[string]sessionstore.Asset
	acks    map[string]string
	retries []retry
	dead    map[string]string
	settled chan struct{}
}

type retry struct {
	job    sessionstore.ProbeJob
	delay  time.Duration
	reason string
}

func newFakeStore() *fakeStore {
	return &fakeStore{
		assets:  map[string]sessionstore.Asset{},
		acks:    map[string]string{},
		dead:    map[string]string{},
		settled: make(chan struct{}, 100),
	}
}

func (f *fakeStore) ClaimProbe(ctx context.Context, _ string, block, _ time.Duration) (sessionstore.ProbeJob, error) {
	f.mu.Lock()
	if len(f.jobs) > 0 {
		j := f.jobs[0]
		f.jobs = f.jobs[1:]
		f.mu.Unlock()
		return j, nil
	}
	f.mu.Unlock()
	select {
	case <-ctx.Done():
		return sessionstore.ProbeJob{}, ctx.Err()
	case <-time.After(min(block, 50*time.Millisecond)):
		return sessionstore.ProbeJob{}, sessionstore.ErrEmpty
	}
}

func (f *fakeStore) AckProbe(_ context.Context, job sessionstore.ProbeJob, d string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acks[job.AssetID] = d
	f.settled <- struct{}{}
	return nil
}

func (f *fakeStore) RetryProbe(_ context.Context, job sessionstore.ProbeJob, delay time.Duration, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.retries = append(f.retries, retry{job, delay, reason})
	f.settled <- struct{}{}
	return nil
}

func (f *fakeStore) DeadProbe(_ context.Context, job sessionstore.ProbeJob, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dead[job.AssetID] = reason
	f.settled <- struct{}{}
	return nil
}

func (f *fakeStore) Asset(_ context.Context, id string) (sessionstore.Asset, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.assets[id]
	if !ok {
		return a, sessionstore.ErrNotFound
	}
	return a, nil
}

// pathInput resolves an asset's StorageKey as a file path.
func pathInput(_ context.Context, a sessionstore.Asset) (string, func(), error) {
	return a.StorageKey, func() {}, nil
}

func TestWorkerSettlesJobs(t *testing.T) {
	media := makeMedia(t)
	text := writeFile(t, "notes", []byte("not media at all\n"))
	missing := filepath.Join(t.TempDir(), "vanished")

	st := newFakeStore()
	st.assets["media"] = sessionstore.Asset{ID: "media", StorageKey: media}
	st.assets["text"] = sessionstore.Asset{ID: "text", StorageKey: text}
	st.assets["flaky"] = sessionstore.Asset{ID: "flaky", StorageKey: missing}
	st.assets["hopeless"] = sessionstore.Asset{ID: "hopeless", StorageKey: missing}
	st.jobs = []sessionstore.ProbeJob{
		{ID: "1", AssetID: "media"},
		{ID: "2", AssetID: "text"},
		{ID: "3", AssetID: "flaky", Attempts: 2},
		{ID: "4", AssetID: "hopeless", Attempts: 4},
		{ID: "5", AssetID: "deleted"},
	}

	w := NewWorker(Config{Consumer: "t"}, st, pathInput)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	for range 5 {
		select {
		case <-st.settled:
		case <-time.After(20 * time.Second):
			t.Fatal("jobs not settled in 20s")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	st.mu.Lock()
	defer st.mu.Unlock()
	checkTwoSeconds(t, st.acks["media"])
	if r, ok := st.dead["text"]; !ok || !regexp.MustCompile("Invalid data").MatchString(r) {
		t.Errorf("text: dead reason %q (parked %v), want Invalid data", r, ok)
	}
	if len(st.retries) != 1 || st.retries[0].job.AssetID != "flaky" || st.retries[0].delay != 4*time.Second {
		t.Errorf("retries %+v, want flaky once after 4s", st.retries)
	}
	if r := st.dead["hopeless"]; !regexp.MustCompile("after 5 attempts").MatchString(r) {
		t.Errorf("hopeless: dead reason %q, want after 5 attempts", r)
	}
	if d, ok := st.acks["deleted"]; !ok || d != "" {
		t.Errorf("deleted asset's job: acks %v, want it dropped with \"\"", st.acks)
	}
	if len(st.acks) != 2 {
		t.Errorf("acks %v, want media and deleted only", st.acks)
	}
}

func TestDelay(t *testing.T) {
	w := NewWorker(Config{BaseDelay: time.Second, MaxDelay: 10 * time.Second}, nil, nil)
	want := []time.Duration{1, 2, 4, 8, 10, 10, 10}
	for i, d := range want {
		if got := w.Delay(i); got != d*time.Second {
			t.Errorf("Delay(%d) = %s, want %s", i, got, d*time.Second)
		}
	}
	if got := w.Delay(200); got != 10*time.Second {
		t.Errorf("Delay(200) = %s, want cap", got)
	}
}

// fakeObjects is a sink with either a URL or a local path.
type fakeObjects struct {
	url    string
	path   string
	closed atomic.Bool
}

func (f *fakeObjects) URL(context.Context, string, time.Duration) (string, error) {
	return f.url, nil
}

func (f *fakeObjects) Open(context.Context, string) (pipeline.Object, error) {
	return fakeObject{f}, nil
}

type fakeObject struct{ f *fakeObjects }

func (o fakeObject) ReadAt([]byte, int64) (int, error) { return 0, errors.New("unused") }
func (o fakeObject) Close() error                      { o.f.closed.Store(true); return nil }
func (o fakeObject) Size() int64                       { return 0 }
func (o fakeObject) Path() string                      { return o.f.path }

func TestSinkInput(t *testing.T) {
	a := sessionstore.Asset{StorageKey: "uploads/x"}
	s3 := &fakeObjects{url: "https://s3/uploads/x?sig"}
	in, release, err := SinkInput(s3, time.Hour)(t.Context(), a)
	if err != nil || in != s3.url {
		t.Fatalf("url sink: %q, %v", in, err)
	}
	release()

	local := &fakeObjects{path: "/data/uploads/x"}
	in, release, err = SinkInput(local, time.Hour)(t.Context(), a)
	if err != nil || in != local.path {
		t.Fatalf("local sink: %q, %v", in, err)
	}
	if local.closed.Load() {
		t.Fatal("object closed before ffprobe ran")
	}
	release()
	if !local.closed.Load() {
		t.Fatal("object not closed after release")
	}

	if _, _, err := SinkInput(&fakeObjects{}, time.Hour)(t.Context(), a); err == nil {
		t.Fatal("sink with neither URL nor path: no error")
	}
}
