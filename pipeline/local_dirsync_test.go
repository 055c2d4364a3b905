package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
)

// TestLocalNewFilesShareDirSync: the first Writes of uploads made while
// their directory's fsync runs share the next one, and each commits only
// once an fsync that started after its file existed has ended: a crash
// must not lose the directory entry of a file whose bytes were committed.
// Fails if the Write does not sync the directory or does so after the
// commit.
func TestLocalNewFilesShareDirSync(t *testing.T) {
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
	write := func(i int) {
		name := fmt.Sprintf("f%02d", i)
		sess := &fakeSession{}
		sess.fail = func(_ int, _ Progress) error {
			mu.Lock()
			defer mu.Unlock()
			if !covered[name] {
				errs[i] = fmt.Errorf("commit of %s before an fsync covering its directory entry ended", name)
			}
			return nil
		}
		data := randomBytes(uint64(i), 1000+i)
		u := createUpload(t, s, sess, "uploads/"+name, int64(len(data)))
		if _, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(data), Size: int64(len(data)), Commit: sess.commit}); err != nil {
			errs[i] = err
			return
		}
		if len(sess.commits) == 0 {
			errs[i] = fmt.Errorf("no commit of %s", name)
		}
	}
	wg.Go(func() { write(0) })
	select {
	case <-held: // the first fsync runs (and waits): the others come meanwhile
	case <-time.After(10 * time.Second):
		once.Do(func() { close(gate) })
		wg.Wait()
		t.Fatalf("the first write of a new file fsynced no directory (err %v)", errs[0])
	}
	for i := 1; i <= n; i++ {
		wg.Go(func() { write(i) })
	}
	waitDirCallers(t, s, filepath.Join(s.Dir(), "uploads"), n)
	once.Do(func() { close(gate) })
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	if got := syncs.Load(); got != 2 {
		t.Fatalf("%d directory fsyncs for one file and %d made while it synced, want 2", got, n)
	}
}

// TestLocalRetriedFirstWriteSyncsDir: a first Write that made the file
// but ended before any byte was stored (so synced nothing) leaves a file
// whose directory entry may not be durable; the next Write at offset 0
// syncs the directory before its commit although the file was there.
func TestLocalRetriedFirstWriteSyncsDir(t *testing.T) {
	s := newTestSink(t)
	var syncs atomic.Int64 // directory fsyncs ended
	s.dirs.do = func(dir string) error {
		// Slow enough that a commit not waiting for it comes first.
		time.Sleep(50 * time.Millisecond)
		err := syncDir(dir)
		syncs.Add(1)
		return err
	}
	sess := &fakeSession{}
	data := randomBytes(7, 5000)
	u := createUpload(t, s, sess, "uploads/retried", int64(len(data)))
	broken := errors.New("test: body broke")
	if _, err := New(s).Write(t.Context(), u, Chunk{Body: iotest.ErrReader(broken), Size: int64(len(data)), Commit: sess.commit}); !errors.Is(err, broken) {
		t.Fatalf("first Write: err %v, want %v", err, broken)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "uploads", "retried")); err != nil {
		t.Fatalf("the first Write made no file: %v", err)
	}
	time.Sleep(60 * time.Millisecond) // the first Write's fsync ends
	syncs.Store(0)
	sess.fail = func(_ int, _ Progress) error {
		if syncs.Load() == 0 {
			t.Error("commit before the directory of the file was synced")
		}
		return nil
	}
	if _, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(data), Size: int64(len(data)), Commit: sess.commit}); err != nil {
		t.Fatal(err)
	}
	checkStored(t, s, u.Key, data)
}

// TestLocalEmptyUploadFile: Create makes no file (the first Write does);
// an upload of length 0 gets its empty file, durable with its directory
// entry, when it completes, and opens as an empty object.
func TestLocalEmptyUploadFile(t *testing.T) {
	s := newTestSink(t)
	var syncs atomic.Int64
	s.dirs.do = func(dir string) error {
		syncs.Add(1)
		return syncDir(dir)
	}
	u := createUpload(t, s, &fakeSession{}, "uploads/empty", 0)
	path := filepath.Join(s.Dir(), "uploads", "empty")
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Create made a file: stat err %v", err)
	}
	if syncs.Load() != 0 {
		t.Fatalf("Create fsynced the directory %d times", syncs.Load())
	}
	if err := s.Complete(t.Context(), u, nil); err != nil {
		t.Fatal(err)
	}
	if syncs.Load() == 0 {
		t.Fatal("Complete of an empty upload made its file without syncing its directory")
	}
	obj, err := s.Open(t.Context(), u.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if n, err := obj.ReadAt(make([]byte, 1), 0); n != 0 || err != io.EOF || obj.Size() != 0 {
		t.Fatalf("empty upload reads %d bytes (size %d), err %v", n, obj.Size(), err)
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
	t.Fatalf("%d first writes never waited for the next directory fsync", n)
}
