package upload

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/sessionstore/bolt"
	"github.com/roughy/ingest/sessionstore/redis"
)

// tel is a Telemetry that counts what the tests look at.
type tel struct {
	counts
	completed atomic.Int64
	failed    atomic.Int64
}

func (t *tel) WithUpload(ctx context.Context, _, _ string) context.Context { return ctx }
func (t *tel) Span(ctx context.Context, _ string) (context.Context, func(error)) {
	return ctx, func(error) {}
}
func (t *tel) Writing(int)                    {}
func (t *tel) Wrote(time.Duration, int64)     {}
func (t *tel) WriteFailed(error, bool)        { t.failed.Add(1) }
func (t *tel) Committed(time.Duration, error) {}
func (t *tel) Completed()                     { t.completed.Add(1) }
func (t *tel) Created()                       {}
func (t *tel) Deleted()                       {}
func (t *tel) Expired()                       {}

// events records the queued event types.
type events struct {
	mu    sync.Mutex
	types []string
}

func (e *events) EmitBefore(_ context.Context, typ string, _ sessionstore.Asset) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.types = append(e.types, typ)
	return nil
}

// svcEnv is a service over a store and a local sink in a temp dir.
type svcEnv struct {
	t     *testing.T
	store sessionstore.Store
	sink  pipeline.Sink
	svc   *Service
	tel   *tel
	ev    *events
}

func describe(sess sessionstore.Session) pipeline.Upload {
	st := sess.Storage
	if StoragePending(sess) {
		st = nil
	}
	return pipeline.Upload{ID: sess.ID, Key: "uploads/" + sess.ID, Length: sess.Length, Offset: sess.Offset,
		HashState: sess.HashState, Storage: st}
}

// onBoth runs fn on a service over bbolt and one over a real Redis.
func onBoth(t *testing.T, cfg Config, fn func(t *testing.T, e *svcEnv)) {
	open := func(t *testing.T, st sessionstore.Store) *svcEnv {
		sink, err := pipeline.NewLocalSink(t.TempDir())
		if err != nil {
			t.Fatalf("NewLocalSink: %v", err)
		}
		e := &svcEnv{t: t, store: st, sink: sink, tel: &tel{}, ev: &events{}}
		e.svc = New(cfg, Deps{Store: st, Pipe: pipeline.New(sink), Events: e.ev, Tel: e.tel,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Describe: describe})
		stop, err := e.svc.Leases().Watch(t.Context())
		if err != nil {
			t.Fatalf("Watch: %v", err)
		}
		t.Cleanup(stop)
		return e
	}
	t.Run("bbolt", func(t *testing.T) {
		st, err := bolt.New(filepath.Join(t.TempDir(), "roughy.db"))
		if err != nil {
			t.Fatalf("NewLocal: %v", err)
		}
		t.Cleanup(func() { _ = st.Close() })
		fn(t, open(t, st))
	})
	t.Run("redis", func(t *testing.T) {
		st, err := redis.New(t.Context(), testsvc.StartRedis(t))
		if err != nil {
			t.Fatalf("NewRedis: %v", err)
		}
		t.Cleanup(func() { _ = st.Close() })
		fn(t, open(t, st))
	})
}

var svcConfig = Config{LeaseTTL: 3 * time.Second, TakeoverWait: 2 * time.Second, UploadExpiry: time.Hour}

// create stores an upload of length bytes (-1: deferred) of account
// "acme", with its storage and quota hold, as a creation does.
func (e *svcEnv) create(length int64) sessionstore.Session {
	e.t.Helper()
	ctx := e.t.Context()
	now := time.Now().UTC().Truncate(time.Second)
	id := "up-" + rand.Text()
	sess := sessionstore.Session{ID: id, Account: "acme", AssetID: id, Length: length, NextPart: 1,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := e.svc.ReserveQuota(ctx, "acme", id, max(length, 0)); err != nil {
		e.t.Fatalf("ReserveQuota: %v", err)
	}
	st, err := e.sink.Create(ctx, describe(sess))
	if err != nil {
		e.t.Fatalf("Create storage: %v", err)
	}
	sess.Storage = st
	a := sessionstore.Asset{ID: id, Account: "acme", SessionID: id, Type: "video", State: sessionstore.StateUploading,
		SizeBytes: length, StorageKey: "uploads/" + id, CreatedAt: now}
	if err := e.store.CreateUpload(ctx, sess, a); err != nil {
		e.t.Fatalf("CreateUpload: %v", err)
	}
	return sess
}

// session reads an upload as a request does.
func (e *svcEnv) session(id string) sessionstore.Session {
	e.t.Helper()
	s, err := e.store.Session(e.t.Context(), id)
	if err != nil {
		e.t.Fatalf("Session: %v", err)
	}
	return s
}

// testBody is a request body read from r; a cut makes its reads fail.
type testBody struct {
	r     io.Reader
	n     atomic.Int64
	taken atomic.Pointer[error]
	cut   func(error)
}

func newTestBody(r io.Reader) *testBody { return &testBody{r: r} }

func (b *testBody) Read(p []byte) (int, error) {
	if t := b.taken.Load(); t != nil {
		return 0, *t
	}
	n, err := b.r.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *testBody) Cut(cause error) bool {
	if !b.taken.CompareAndSwap(nil, &cause) {
		return false
	}
	if b.cut != nil {
		b.cut(cause)
	}
	return true
}

func (b *testBody) Taken() error {
	if t := b.taken.Load(); t != nil {
		return *t
	}
	return nil
}

func (b *testBody) ReadErr() error  { return nil }
func (b *testBody) Received() int64 { return b.n.Load() }

// appendBytes appends data at offset to sess, as read by the request.
func (e *svcEnv) appendBytes(sess sessionstore.Session, offset int64, data []byte, mod ...func(*AppendRequest)) (sessionstore.Session, error) {
	req := AppendRequest{Offset: offset, Size: int64(len(data)), Length: -1, Body: newTestBody(bytes.NewReader(data)),
		Heads: sess.HeadFence, Began: time.Now()}
	for _, m := range mod {
		m(&req)
	}
	return e.svc.Append(e.t.Context(), sess, req)
}

// wantStored fails unless the upload is complete with data's bytes and
// SHA-256, read back from storage.
func (e *svcEnv) wantStored(id string, data []byte) {
	e.t.Helper()
	s := e.session(id)
	if !s.Completed || s.Offset != int64(len(data)) {
		e.t.Fatalf("upload: completed %v offset %d, want completed at %d", s.Completed, s.Offset, len(data))
	}
	a, err := e.store.Asset(e.t.Context(), id)
	sum := sha256.Sum256(data)
	if err != nil || a.State != sessionstore.StateReady || a.SHA256 != hexOf(sum[:]) {
		e.t.Fatalf("asset: %+v (%v), want ready with the data's sha256", a, err)
	}
	obj, err := e.sink.Open(e.t.Context(), "uploads/"+id)
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	defer func() { _ = obj.Close() }()
	got := make([]byte, obj.Size())
	if _, err := obj.ReadAt(got, 0); err != nil && err != io.EOF {
		e.t.Fatalf("ReadAt: %v", err)
	}
	if err := testsvc.SameBytes(got, data); err != nil {
		e.t.Fatalf("stored bytes: %v", err)
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 2*len(b))
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(out)
}

// TestAppendCompletes: appends in two requests store the bytes and the
// last completes the upload (asset ready with the SHA-256, quota
// settled, asset.ready queued before).
func TestAppendCompletes(t *testing.T) {
	onBoth(t, svcConfig, func(t *testing.T, e *svcEnv) {
		data := make([]byte, 300<<10)
		rand.Read(data)
		sess := e.create(int64(len(data)))
		got, err := e.appendBytes(sess, 0, data[:100<<10])
		if err != nil || got.Offset != 100<<10 || got.Completed {
			t.Fatalf("first append: offset %d completed %v (%v), want %d, not completed", got.Offset, got.Completed, err, 100<<10)
		}
		got, err = e.appendBytes(e.session(sess.ID), 100<<10, data[100<<10:])
		if err != nil || !got.Completed {
			t.Fatalf("last append: completed %v (%v), want completed", got.Completed, err)
		}
		e.wantStored(sess.ID, data)
		if e.tel.completed.Load() != 1 || len(e.ev.types) != 1 || e.ev.types[0] != sessionstore.EventAssetReady {
			t.Fatalf("completions %d, events %v; want 1 and [%s]", e.tel.completed.Load(), e.ev.types, sessionstore.EventAssetReady)
		}
		_, usage, err := e.store.Quota(t.Context(), "acme")
		if err != nil || usage.BytesStored != int64(len(data)) || usage.Uploads != 0 {
			t.Fatalf("quota usage after completion: %+v (%v), want %d bytes stored, no upload in progress", usage, err, len(data))
		}
	})
}

// TestAppendOffsetMismatch: an append at another offset than the
// upload's is refused with both offsets, and stores nothing.
func TestAppendOffsetMismatch(t *testing.T) {
	onBoth(t, svcConfig, func(t *testing.T, e *svcEnv) {
		sess := e.create(10)
		if _, err := e.appendBytes(sess, 0, []byte("0123")); err != nil {
			t.Fatalf("append: %v", err)
		}
		_, err := e.appendBytes(e.session(sess.ID), 2, []byte("23456789"))
		om, ok := errors.AsType[*OffsetMismatchError](err)
		if !ok || om.Want != 4 || om.Got != 2 || !errors.Is(err, ErrOffsetMismatch) {
			t.Fatalf("append at 2 of an upload at 4: got %v, want OffsetMismatchError{Want: 4, Got: 2}", err)
		}
		// The request read the upload before another committed: the
		// lease's fresh session tells.
		stale := sess
		_, err = e.appendBytes(stale, 0, []byte("0123456789"))
		if om, ok := errors.AsType[*OffsetMismatchError](err); !ok || om.Want != 4 || om.Got != 0 {
			t.Fatalf("append at the offset a stale read gave: got %v, want OffsetMismatchError{Want: 4, Got: 0}", err)
		}
		if got := e.session(sess.ID).Offset; got != 4 {
			t.Fatalf("offset after the refusals: got %d, want 4", got)
		}
	})
}

// TestAppendChecksumMismatch: a body whose checksum does not match is
// discarded; the upload stays where it was.
func TestAppendChecksumMismatch(t *testing.T) {
	onBoth(t, svcConfig, func(t *testing.T, e *svcEnv) {
		sess := e.create(10)
		wrong := sha256.Sum256([]byte("something else"))
		_, err := e.appendBytes(sess, 0, []byte("0123456789"), func(r *AppendRequest) {
			r.Checksum = &pipeline.Checksum{Algorithm: "sha256", Sum: wrong[:]}
		})
		if !errors.Is(err, pipeline.ErrChecksumMismatch) {
			t.Fatalf("append with a wrong checksum: got %v, want ErrChecksumMismatch", err)
		}
		if got := e.session(sess.ID); got.Offset != 0 || got.Completed {
			t.Fatalf("after the refused append: offset %d completed %v, want 0, not completed", got.Offset, got.Completed)
		}
	})
}

// TestAppendDeferredLength: an upload created without a length gets it
// from the append that ends it, and completes.
func TestAppendDeferredLength(t *testing.T) {
	onBoth(t, svcConfig, func(t *testing.T, e *svcEnv) {
		data := []byte("deferred length, told at the end")
		sess := e.create(-1)
		if _, err := e.appendBytes(sess, 0, data[:8]); err != nil {
			t.Fatalf("append without a length: %v", err)
		}
		if got := e.session(sess.ID); got.Length != -1 || got.Offset != 8 {
			t.Fatalf("after the first append: length %d offset %d, want -1, 8", got.Length, got.Offset)
		}
		_, err := e.appendBytes(e.session(sess.ID), 8, data[8:], func(r *AppendRequest) { r.Length = 4 })
		if lb, ok := errors.AsType[*LengthBelowOffsetError](err); !ok || lb.Length != 4 || lb.Offset != 8 {
			t.Fatalf("a length below the offset: got %v, want LengthBelowOffsetError{4, 8}", err)
		}
		if _, err := e.appendBytes(e.session(sess.ID), 8, data[8:], func(r *AppendRequest) { r.Length = int64(len(data)) }); err != nil {
			t.Fatalf("the append that sets the length: %v", err)
		}
		e.wantStored(sess.ID, data)
		_, err = e.appendBytes(e.session(sess.ID), int64(len(data)), []byte("x"), func(r *AppendRequest) { r.Length = 99 })
		if !errors.Is(err, ErrLengthChanged) {
			t.Fatalf("another length once set: got %v, want ErrLengthChanged", err)
		}
	})
}

// TestAppendQuotaAtTheEdge: with a reservation limit, an upload of a
// deferred length may grow to the limit exactly, and not a byte past
// it; the refusal names the limit.
func TestAppendQuotaAtTheEdge(t *testing.T) {
	onBoth(t, svcConfig, func(t *testing.T, e *svcEnv) {
		if err := e.store.SetQuota(t.Context(), "acme", sessionstore.QuotaLimits{BytesReserved: 10,
			BytesStored: sessionstore.QuotaDefault, Uploads: sessionstore.QuotaDefault}); err != nil {
			t.Fatalf("SetQuota: %v", err)
		}
		sess := e.create(-1)
		if _, err := e.appendBytes(sess, 0, []byte("0123456789")); err != nil {
			t.Fatalf("append up to the limit: %v", err)
		}
		_, err := e.appendBytes(e.session(sess.ID), 10, []byte("x"))
		qe, ok := errors.AsType[*sessionstore.QuotaError](err)
		if !ok || qe.Limit != sessionstore.QuotaBytesReserved || !errors.Is(err, sessionstore.ErrQuotaExceeded) {
			t.Fatalf("a byte past the limit: got %v, want a QuotaError on %s", err, sessionstore.QuotaBytesReserved)
		}
		if got := e.session(sess.ID).Offset; got != 10 {
			t.Fatalf("offset after the refusal: got %d, want 10", got)
		}
	})
}

// TestAppendPastLength: a body longer than what is left of the upload
// is refused before it is read; one of unknown size that runs past it
// is cut at the length and refused.
func TestAppendPastLength(t *testing.T) {
	onBoth(t, svcConfig, func(t *testing.T, e *svcEnv) {
		sess := e.create(4)
		if _, err := e.appendBytes(sess, 0, []byte("01234")); !errors.Is(err, ErrPastLength) {
			t.Fatalf("a body past the length: got %v, want ErrPastLength", err)
		}
		_, err := e.appendBytes(sess, 0, []byte("01234"), func(r *AppendRequest) { r.Size = -1 })
		if !errors.Is(err, ErrPastLength) || !errors.Is(err, pipeline.ErrTooLarge) {
			t.Fatalf("a body of unknown size past the length: got %v, want ErrPastLength (ErrTooLarge)", err)
		}
		if got := e.session(sess.ID); got.Completed {
			t.Fatalf("a failed append completed the upload")
		}
	})
}

// TestAppendTakenOver: a newer append takes the upload over from one
// whose body is still coming: the older stops with ErrTakenOver, keeping
// what it made durable, and the newer continues at that offset.
func TestAppendTakenOver(t *testing.T) {
	onBoth(t, svcConfig, func(t *testing.T, e *svcEnv) {
		data := make([]byte, 64<<10)
		rand.Read(data)
		sess := e.create(int64(len(data)))
		done := e.appendInFlight(t, sess, data)
		cur := e.session(sess.ID)
		_, err := e.appendBytes(cur, cur.Offset, data[cur.Offset:])
		var om *OffsetMismatchError
		if errors.As(err, &om) {
			// The older write committed its bytes while letting go.
			_, err = e.appendBytes(e.session(sess.ID), om.Want, data[om.Want:])
		}
		if err != nil {
			t.Fatalf("the newer append: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrTakenOver) {
			t.Fatalf("the older append: got %v, want ErrTakenOver", err)
		}
		e.wantStored(sess.ID, data)
	})
}
