package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLocalCreateSharesDirSync: files created while their directory's
// fsync runs share the next one, and each Create returns only once an
// fsync that started after its file existed has ended.
func TestLocalCreateSharesDirSync(t *testing.T) {
	const n = 16
	s, err := NewLocalSink(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(t.Context(), Upload{Key: "uploads/first"}); err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		covered = map[string]bool{} // names in a directory whose fsync ended
		syncs   atomic.Int64
		held    = make(chan struct{})
		gate    = make(chan struct{})
	)
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(gate) }) })
	s.dirs.do = func(dir string) error {
		// What an fsync makes durable: the entries made before it started.
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		if syncs.Add(1) == 1 {
			close(held)
			<-gate
		}
		if err := syncDir(dir); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for _, e := range entries {
			covered[e.Name()] = true
		}
		return nil
	}

	var wg sync.WaitGroup
	errs := make([]error, n+1)
	create := func(i int) {
		name := fmt.Sprintf("f%02d", i)
		if _, errs[i] = s.Create(t.Context(), Upload{Key: "uploads/" + name}); errs[i] != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !covered[name] {
			errs[i] = fmt.Errorf("Create of %s returned before an fsync covering it ended", name)
		}
	}
	wg.Go(func() { create(0) })
	<-held // the first fsync runs (and waits): the others come meanwhile
	for i := 1; i <= n; i++ {
		wg.Go(func() { create(i) })
	}
	waitDirCallers(t, s, filepath.Join(s.Dir(), "uploads"), n)
	once.Do(func() { close(gate) })
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("create %d: %v", i, err)
		}
	}
	if got := syncs.Load(); got != 2 {
		t.Fatalf("%d directory fsyncs for one file and %d created while it synced, want 2", got, n)
	}
}

// waitDirCallers waits until n callers wait for dir's next fsync.
func waitDirCallers(t *testing.T, s *LocalSink, dir string, n int) {
	t.Helper()
	for range 10_000 {
		s.dirs.mu.Lock()
		d := s.dirs.dirs[dir]
		s.dirs.mu.Unlock()
		got := 0
		if d != nil {
			d.mu.Lock()
			if d.next != nil {
				got = d.next.callers
			}
			d.mu.Unlock()
		}
		if got >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%d creations never waited for the next directory fsync", n)
}
