package bolt

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/roughy/ingest/sessionstore"
)

// holdWriter starts a write whose function waits for the returned release,
// so that the calls made meanwhile queue behind it; it returns once that
// write runs. wait waits for the write to end.
func holdWriter(t *testing.T, l *Store) (release func(), wait func()) {
	t.Helper()
	running, gate := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- l.update("hold", func(_ *bbolt.Tx) error {
			close(running)
			<-gate
			return nil
		})
	}()
	<-running
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	// A test that fails while the write waits must not leave it waiting
	// (Close would wait for it); cleanups run before the store's Close.
	t.Cleanup(release)
	return release, func() {
		if err := <-done; err != nil {
			t.Errorf("holding write: %v", err)
		}
	}
}

// waitQueued waits until n calls wait in l's group queue. Writes that do
// not queue (each taking bbolt's writer lock on its own) never get there:
// that fails after a while instead of hanging.
func waitQueued(t *testing.T, l *Store, n int) {
	t.Helper()
	for range 10_000 {
		l.group.mu.Lock()
		got := len(l.group.queue)
		l.group.mu.Unlock()
		if got >= n {
			return
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%d calls never queued behind a running write", n)
}

// TestLocalGroupCommit: commits that arrive while a write transaction runs
// are committed together, in one more transaction, and all of them are in
// the file when it is opened again.
func TestLocalGroupCommit(t *testing.T) {
	const n = 64
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "roughy.db")
	l, err := New(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	now := time.Now()
	leases := make([]sessionstore.Lease, n)
	for i := range n {
		id := fmt.Sprintf("s%02d", i)
		if err := l.CreateUpload(ctx, sessionstore.Session{ID: id, AssetID: id, Length: 1000, CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
			sessionstore.Asset{ID: id, SessionID: id, State: sessionstore.StateUploading, SizeBytes: 1000}); err != nil {
			t.Fatal(err)
		}
		if leases[i], err = l.AcquireLease(ctx, id, time.Minute, 0); err != nil {
			t.Fatal(err)
		}
	}

	release, wait := holdWriter(t, l)
	before := l.group.commits.Load()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = l.Commit(ctx, leases[i], sessionstore.Commit{NewOffset: int64(100 + i), HashState: []byte{byte(i)}, Length: -1})
		})
	}
	waitQueued(t, l, n)
	release()
	wg.Wait()
	wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	if got := l.group.commits.Load() - before; got != 2 {
		t.Fatalf("%d write transactions for the holding write and %d commits queued behind it, want 2", got, n)
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l, err = New(path); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		s, err := l.Session(ctx, fmt.Sprintf("s%02d", i))
		if err != nil || s.Offset != int64(100+i) || len(s.HashState) != 1 || s.HashState[0] != byte(i) {
			t.Fatalf("session %d after reopen: got offset %d state %v, %v; want offset %d", i, s.Offset, s.HashState, err, 100+i)
		}
	}
}

// TestLocalGroupAnswers: in a shared transaction each caller is answered
// only once the transaction is committed (bbolt runs commit handlers after
// its fsync), a failing function's writes are rolled back and its error is
// its caller's alone, and the others commit.
func TestLocalGroupAnswers(t *testing.T) {
	l, err := New(filepath.Join(t.TempDir(), "roughy.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	errRefused := errors.New("refused")
	const n = 8
	fails := func(i int) bool { return i == 0 || i == 5 }
	release, wait := holdWriter(t, l)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		var committed atomic.Bool
		wg.Go(func() {
			errs[i] = l.update("test", func(tx *bbolt.Tx) error {
				committed.Store(false)
				tx.OnCommit(func() { committed.Store(true) })
				if err := tx.Bucket(boltBucketMeta).Put(fmt.Appendf(nil, "k%d", i), []byte("v")); err != nil {
					return err
				}
				if fails(i) {
					return errRefused
				}
				return nil
			})
			if errs[i] == nil && !committed.Load() {
				errs[i] = errors.New("answered before its transaction committed")
			}
		})
		// One at a time, so that the queue's order is the loop's: call 0
		// fails first in its transaction, call 5 after others.
		waitQueued(t, l, i+1)
	}
	release()
	wg.Wait()
	wait()
	for i, err := range errs {
		if fails(i) != errors.Is(err, errRefused) || !fails(i) && err != nil {
			t.Errorf("call %d: got %v, want refused %v", i, err, fails(i))
		}
	}
	err = l.db.View(func(tx *bbolt.Tx) error {
		for i := range n {
			if got := tx.Bucket(boltBucketMeta).Get(fmt.Appendf(nil, "k%d", i)); (got != nil) == fails(i) {
				t.Errorf("key of call %d: got %q, want stored %v", i, got, !fails(i))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLocalHookLogCount: an endpoint's delivery log keeps its record count
// in its bucket's sequence (a new record costs no walk of the bucket), a
// log without one is counted once, and the trim still keeps it within
// MaxWebhookDeliveries+HookLogSlack records.
func TestLocalHookLogCount(t *testing.T) {
	l, err := New(filepath.Join(t.TempDir(), "roughy.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := l.CreateWebhook(t.Context(), sessionstore.Webhook{ID: "h", Account: "acme"}); err != nil {
		t.Fatal(err)
	}
	base := time.Now()
	put := func(from, to int) {
		t.Helper()
		err := l.update("test", func(tx *bbolt.Tx) error {
			for i := from; i < to; i++ {
				d := sessionstore.WebhookDelivery{HookID: "h", EventID: fmt.Sprintf("e%05d", i), CreatedAt: base.Add(time.Duration(i) * time.Second)}
				if err := boltPutHookLog(tx, d); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	check := func(want int) {
		t.Helper()
		err := l.db.View(func(tx *bbolt.Tx) error {
			b := tx.Bucket(boltBucketHookLog).Bucket([]byte("h"))
			if n, seq := b.Stats().KeyN, b.Sequence(); n != want || seq != uint64(n) {
				t.Errorf("log of %d records, sequence %d; want %d of both", n, seq, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	put(0, 10)
	put(5, 12) // five records again: their latest state, not new ones
	check(12)
	// A log written before the count: counted at its next record.
	if err := l.update("test", func(tx *bbolt.Tx) error {
		return tx.Bucket(boltBucketHookLog).Bucket([]byte("h")).SetSequence(0)
	}); err != nil {
		t.Fatal(err)
	}
	put(12, 13)
	check(13)
	const most = sessionstore.MaxWebhookDeliveries + sessionstore.HookLogSlack
	put(13, most)
	check(most)
	put(most, most+1)
	check(sessionstore.MaxWebhookDeliveries)
}
