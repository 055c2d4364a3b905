package pipeline

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncLog wraps the sink's fdatasync and records, per file, the highest
// offset that was durable once a sync returned: the file's size when the
// sync started.
type syncLog struct {
	mu     sync.Mutex
	synced map[string]int64 // file name -> durable offset
	fail   error            // returned instead of syncing, when set
}

func (l *syncLog) sync(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	l.mu.Lock()
	fail := l.fail
	l.mu.Unlock()
	if fail != nil {
		return fail
	}
	if err := syncData(f); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.synced[filepath.Base(f.Name())] = max(l.synced[filepath.Base(f.Name())], fi.Size())
	return nil
}

func (l *syncLog) durable(id string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.synced[id]
}

// TestLocalCommitsOnlySynced is the durability promise of the embedded
// default: every offset committed is at or below the
// highest offset synced before the commit. SIGKILL keeps the page cache,
// so the kill tests cannot see a commit that ran before (or without) its
// fdatasync; this test does.
func TestLocalCommitsOnlySynced(t *testing.T) {
	commitEvery16MiB(t)
	log := &syncLog{synced: map[string]int64{}}
	s, err := NewLocalSink(filepath.Join(t.TempDir(), "data"), LocalSync(log.sync))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		size int
		sum  bool
	}{
		{"several commits", 40 << 20, false},
		{"one commit", 3<<20 + 17, false},
		{"checksum", 20<<20 + 5, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess := &fakeSession{}
			id := fmt.Sprintf("synced-%d", tc.size)
			sess.fail = func(_ int, p Progress) error {
				if d := log.durable(id); p.Offset > d {
					t.Errorf("commit of offset %d while only %d bytes were synced", p.Offset, d)
				}
				return nil
			}
			data := randomBytes(40, tc.size)
			u := createUpload(t, s, sess, "uploads/"+id, int64(len(data)))
			c := Chunk{Body: &chunkedReader{r: bytes.NewReader(data), max: 256 << 10}, Size: int64(len(data)), Commit: sess.commit}
			if tc.sum {
				sum := sha256.Sum256(data)
				c.Checksum = &Checksum{Algorithm: "sha256", Sum: sum[:]}
			}
			got, err := New(s).Write(t.Context(), u, c)
			if err != nil || got.Offset != int64(len(data)) {
				t.Fatalf("Write: offset %d, err %v; want %d, nil", got.Offset, err, len(data))
			}
			if len(sess.commits) == 0 {
				t.Fatal("no commit")
			}
		})
	}
}

// A sync that fails commits nothing of the bytes it should have made
// durable, and the error says whether the disk is full (ErrStorageFull,
// which the proxy answers with 507) or storage failed otherwise
// (ErrStorage, 503).
func TestLocalFailedSyncCommitsNothing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		wantFull bool
	}{
		{"EIO", syscall.EIO, false},
		{"ENOSPC", syscall.ENOSPC, true},
		{"EDQUOT", syscall.EDQUOT, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := &syncLog{synced: map[string]int64{}, fail: tc.err}
			s, err := NewLocalSink(filepath.Join(t.TempDir(), "data"), LocalSync(log.sync))
			if err != nil {
				t.Fatal(err)
			}
			sess := &fakeSession{}
			data := randomBytes(41, 2<<20)
			u := createUpload(t, s, sess, "uploads/nosync", int64(len(data)))
			got, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(data), Size: int64(len(data)), Commit: sess.commit})
			if !errors.Is(err, ErrStorage) || errors.Is(err, ErrStorageFull) != tc.wantFull || !errors.Is(err, tc.err) {
				t.Fatalf("Write: err %v; want ErrStorage wrapping %v, ErrStorageFull %v", err, tc.err, tc.wantFull)
			}
			if got.Offset != 0 || sess.calls != 0 {
				t.Fatalf("offset %d after %d commit calls, want 0 after none", got.Offset, sess.calls)
			}
		})
	}
}

// gatedReader returns its data in 64 KiB reads, but not before open is
// closed; started closes at its first Read.
type gatedReader struct {
	data    []byte
	open    chan struct{}
	started chan struct{}
	once    sync.Once
}

func (g *gatedReader) Read(p []byte) (int, error) {
	g.once.Do(func() { close(g.started) })
	<-g.open
	if len(g.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 64<<10)], g.data)
	g.data = g.data[n:]
	return n, nil
}

// TestLocalBuffersWithinBudget: the local sink's buffers come out of the
// --max-buffer-memory budget. With a budget of one Write's
// buffers, a second Write waits, before reading a byte of its body, until
// the first gave its buffers back; meanwhile the budget is spent exactly.
func TestLocalBuffersWithinBudget(t *testing.T) {
	pool := NewPool(localDepth * localBufSize)
	s, err := NewLocalSink(filepath.Join(t.TempDir(), "data"), LocalBuffers(pool))
	if err != nil {
		t.Fatal(err)
	}
	// A body longer than localDepth buffers: each Write takes them all.
	data := randomBytes(42, (localDepth+2)<<20)
	bodies := [2]*gatedReader{}
	done := make(chan error, 2)
	for i := range bodies {
		bodies[i] = &gatedReader{data: data, open: make(chan struct{}), started: make(chan struct{})}
		sess := &fakeSession{}
		u := createUpload(t, s, sess, fmt.Sprintf("uploads/budget%d", i), int64(len(data)))
		go func() {
			_, err := New(s).Write(t.Context(), u, Chunk{Body: bodies[i], Size: int64(len(data)), Commit: sess.commit})
			done <- err
		}()
		if i == 0 {
			// The first Write holds its buffers while its body stalls.
			<-bodies[0].started
		}
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case <-bodies[1].started:
		t.Fatal("the second Write read its body while the first held the whole budget")
	default:
	}
	if got, want := pool.InUse(), int64(localDepth*localBufSize); got != want {
		t.Fatalf("budget in use %d, want %d (one Write's buffers)", got, want)
	}
	close(bodies[0].open)
	if err := <-done; err != nil {
		t.Fatalf("first Write: %v", err)
	}
	select {
	case <-bodies[1].started:
	case <-time.After(5 * time.Second):
		t.Fatal("the second Write did not start once the first gave its buffers back")
	}
	close(bodies[1].open)
	if err := <-done; err != nil {
		t.Fatalf("second Write: %v", err)
	}
	if got := pool.InUse(); got != 0 {
		t.Fatalf("budget in use after both Writes: %d, want 0", got)
	}
}

// A budget below one Write's localDepth buffers still serves writes, with
// fewer buffers; below one buffer the sink refuses to start.
func TestLocalSmallBudget(t *testing.T) {
	pool := NewPool(2 * localBufSize)
	s, err := NewLocalSink(filepath.Join(t.TempDir(), "data"), LocalBuffers(pool))
	if err != nil {
		t.Fatal(err)
	}
	sess := &fakeSession{}
	data := randomBytes(43, 5<<20+3)
	u := createUpload(t, s, sess, "uploads/small", int64(len(data)))
	if got, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(data), Size: int64(len(data)), Commit: sess.commit}); err != nil || got.Offset != int64(len(data)) {
		t.Fatalf("Write with a 2 MiB budget: offset %d, err %v", got.Offset, err)
	}
	checkStored(t, s, u.Key, data)
	if _, err := NewLocalSink(t.TempDir(), LocalBuffers(NewPool(localBufSize-1))); !errors.Is(err, ErrOverBudget) {
		t.Fatalf("NewLocalSink with a budget below one buffer: err %v, want ErrOverBudget", err)
	}
}

// TestLocalSmallBodiesShareBudget: a Write takes only the buffers its body
// can fill, so two 256 KiB bodies stream at once on a budget of two
// buffers (with localDepth each, the second waited for the first).
func TestLocalSmallBodiesShareBudget(t *testing.T) {
	pool := NewPool(2 * localBufSize)
	s, err := NewLocalSink(filepath.Join(t.TempDir(), "data"), LocalBuffers(pool))
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(43, 256<<10)
	open := make(chan struct{})
	bodies := [2]*gatedReader{}
	done := make(chan error, 2)
	for i := range bodies {
		bodies[i] = &gatedReader{data: data, open: open, started: make(chan struct{})}
		sess := &fakeSession{}
		u := createUpload(t, s, sess, fmt.Sprintf("uploads/small%d", i), int64(len(data)))
		go func() {
			_, err := New(s).Write(t.Context(), u, Chunk{Body: bodies[i], Size: int64(len(data)), Commit: sess.commit})
			done <- err
		}()
	}
	for i, b := range bodies {
		select {
		case <-b.started:
		case <-time.After(5 * time.Second):
			close(open)
			t.Fatalf("Write %d did not start reading while the other held its buffer", i)
		}
	}
	if got, want := pool.InUse(), int64(2*localBufSize); got != want {
		t.Errorf("budget in use %d, want %d (one buffer per Write)", got, want)
	}
	close(open)
	for range bodies {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for i := range bodies {
		checkStored(t, s, fmt.Sprintf("uploads/small%d", i), data)
	}
}
