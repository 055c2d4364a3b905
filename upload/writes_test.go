package upload

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
)

// writeLog is a store that records the writes of the upload path.
type writeLog struct {
	sessionstore.Store
	mu  sync.Mutex
	ops []string
}

func (w *writeLog) note(op string) {
	w.mu.Lock()
	w.ops = append(w.ops, op)
	w.mu.Unlock()
}

// take returns the writes recorded since the last take.
func (w *writeLog) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	ops := w.ops
	w.ops = nil
	return ops
}

func (w *writeLog) CreateUpload(ctx context.Context, s sessionstore.Session, a sessionstore.Asset) error {
	w.note("CreateUpload")
	return w.Store.CreateUpload(ctx, s, a)
}

func (w *writeLog) CreateReserved(ctx context.Context, c sessionstore.Creation) error {
	w.note("CreateReserved")
	return w.Store.CreateReserved(ctx, c)
}

func (w *writeLog) ReserveQuota(ctx context.Context, account, id string, n int64, d sessionstore.QuotaLimits) error {
	w.note("ReserveQuota")
	return w.Store.ReserveQuota(ctx, account, id, n, d)
}

func (w *writeLog) SettleQuota(ctx context.Context, account, id string, size int64) error {
	w.note("SettleQuota")
	return w.Store.SettleQuota(ctx, account, id, size)
}

func (w *writeLog) Commit(ctx context.Context, l sessionstore.Lease, c sessionstore.Commit) (sessionstore.Session, error) {
	w.note("Commit")
	return w.Store.Commit(ctx, l, c)
}

// TestSmallUploadWrites: a creation is one store write (session, asset,
// quota hold), and a PATCH that carries the whole upload into the local
// file is one more (offset, completion, settled quota): every write of
// the session store waits for a commit of its own (an fsync on the
// embedded store), and concurrent small uploads waited for five.
func TestSmallUploadWrites(t *testing.T) {
	onBoth(t, svcConfig, func(t *testing.T, e *svcEnv) {
		w := &writeLog{Store: e.store}
		e.svc = New(svcConfig, Deps{Store: w, Pipe: pipeline.New(e.sink), Events: e.ev, Tel: e.tel,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Describe: describe})
		data := []byte("a small upload, whole in one PATCH")
		now := time.Now().UTC().Truncate(time.Second)
		id := "up-" + rand.Text()
		sess := sessionstore.Session{ID: id, Account: "acme", AssetID: id, Length: int64(len(data)), NextPart: 1,
			CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		a := sessionstore.Asset{ID: id, Account: "acme", SessionID: id, Type: "video", State: sessionstore.StateUploading,
			SizeBytes: sess.Length, StorageKey: "uploads/" + id, CreatedAt: now}
		if err := e.svc.Create(t.Context(), &sess, a); err != nil {
			t.Fatalf("Create: %v", err)
		}
		if ops := w.take(); !slices.Equal(ops, []string{"CreateReserved"}) {
			t.Fatalf("store writes of a creation: %v, want [CreateReserved]", ops)
		}
		_, u, err := e.store.Quota(t.Context(), "acme")
		if err != nil || u != (sessionstore.QuotaUsage{Uploads: 1, BytesReserved: sess.Length}) {
			t.Fatalf("quota after the creation: %+v, %v; want one upload holding %d bytes", u, err, sess.Length)
		}
		if _, err := e.appendBytes(e.session(id), 0, data); err != nil {
			t.Fatalf("append: %v", err)
		}
		if ops := w.take(); !slices.Equal(ops, []string{"Commit"}) {
			t.Fatalf("store writes of a completing PATCH: %v, want [Commit]", ops)
		}
		e.wantStored(id, data)
		if _, u, err = e.store.Quota(t.Context(), "acme"); err != nil || u != (sessionstore.QuotaUsage{BytesStored: sess.Length}) {
			t.Fatalf("quota after the completion: %+v, %v; want %d bytes stored, no hold", u, err, sess.Length)
		}
		e.ev.mu.Lock()
		defer e.ev.mu.Unlock()
		if want := []string{sessionstore.EventAssetCreated, sessionstore.EventAssetReady}; !slices.Equal(e.ev.types, want) {
			t.Fatalf("events: %v, want %v", e.ev.types, want)
		}
		if e.tel.completed.Load() != 1 {
			t.Fatalf("completions told: %d, want 1", e.tel.completed.Load())
		}
	})
}
