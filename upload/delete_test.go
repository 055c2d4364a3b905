package upload

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// TestDeleteTakesOverWrite: a DELETE during a write cuts it (ErrDeleted),
// frees the storage and the quota hold, and queues asset.deleted; a
// second DELETE, or one of another account, changes nothing.
func TestDeleteTakesOverWrite(t *testing.T) {
	onBoth(t, svcConfig, func(t *testing.T, e *svcEnv) {
		data := make([]byte, 64<<10)
		rand.Read(data)
		sess := e.create(int64(len(data)))
		if err := e.svc.Delete(t.Context(), "globex", sess.ID); err != nil {
			t.Fatalf("DELETE of another account's upload: %v", err)
		}
		if _, err := e.store.Session(t.Context(), sess.ID); err != nil {
			t.Fatalf("another account's DELETE removed the upload: %v", err)
		}
		done := e.appendInFlight(t, sess, data)
		waitLeased(t, e, sess.ID)
		if err := e.svc.Delete(t.Context(), "acme", sess.ID); err != nil {
			t.Fatalf("DELETE: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrDeleted) {
			t.Fatalf("the write: got %v, want ErrDeleted", err)
		}
		if _, err := e.store.Session(t.Context(), sess.ID); !errors.Is(err, sessionstore.ErrNotFound) {
			t.Fatalf("session after DELETE: got %v, want ErrNotFound", err)
		}
		if _, err := e.sink.Open(t.Context(), "uploads/"+sess.ID); err == nil {
			t.Fatal("the upload's storage is still there after DELETE")
		}
		if _, usage, err := e.store.Quota(t.Context(), "acme"); err != nil || usage.Uploads != 0 || usage.BytesReserved != 0 {
			t.Fatalf("quota after DELETE: %+v (%v), want nothing held", usage, err)
		}
		if n := len(e.ev.types); n != 1 || e.ev.types[0] != sessionstore.EventAssetDeleted {
			t.Fatalf("events: %v, want [%s]", e.ev.types, sessionstore.EventAssetDeleted)
		}
		if err := e.svc.Delete(t.Context(), "acme", sess.ID); err != nil {
			t.Fatalf("a second DELETE: %v", err)
		}
	})
}

// TestSweepExpires: the janitor frees an upload past its expiry (storage,
// session, quota hold, upload.expired queued) and leaves one that is not.
func TestSweepExpires(t *testing.T) {
	onBoth(t, svcConfig, func(t *testing.T, e *svcEnv) {
		old, fresh := e.create(10), e.create(10)
		e.expireNow(old)
		if n := e.svc.Sweep(t.Context(), time.Now()); n != 1 {
			t.Fatalf("Sweep: freed %d, want 1", n)
		}
		if _, err := e.store.Session(t.Context(), old.ID); !errors.Is(err, sessionstore.ErrNotFound) {
			t.Fatalf("the expired upload after the sweep: got %v, want ErrNotFound", err)
		}
		if _, err := e.sink.Open(t.Context(), "uploads/"+old.ID); err == nil {
			t.Fatal("the expired upload's storage is still there")
		}
		if _, err := e.store.Session(t.Context(), fresh.ID); err != nil {
			t.Fatalf("an upload not expired was freed: %v", err)
		}
		if _, usage, err := e.store.Quota(t.Context(), "acme"); err != nil || usage.Uploads != 1 {
			t.Fatalf("quota after the sweep: %+v (%v), want the one upload left", usage, err)
		}
		if n := len(e.ev.types); n != 1 || e.ev.types[0] != sessionstore.EventUploadExpired {
			t.Fatalf("events: %v, want [%s]", e.ev.types, sessionstore.EventUploadExpired)
		}
	})
}

// expireNow moves the upload's expiry a minute into the past.
func (e *svcEnv) expireNow(sess sessionstore.Session) {
	e.t.Helper()
	ctx := e.t.Context()
	l, err := e.store.AcquireLease(ctx, sess.ID, time.Minute, 0)
	if err != nil {
		e.t.Fatalf("AcquireLease: %v", err)
	}
	cur := l.Session
	if _, err := e.store.Commit(ctx, l, sessionstore.Commit{ExpectOffset: cur.Offset, NewOffset: cur.Offset,
		HashState: cur.HashState, Length: -1, ExpiresAt: time.Now().Add(-time.Minute)}); err != nil {
		e.t.Fatalf("Commit: %v", err)
	}
	if err := e.store.ReleaseLease(ctx, l); err != nil {
		e.t.Fatalf("ReleaseLease: %v", err)
	}
}

// TestCheckRepr: a representation digest that matches the stored bytes
// passes; one that does not leaves the upload as it was when the request
// stored nothing (ErrReprMismatch), and deletes it when it did
// (ErrReprFailed).
func TestCheckRepr(t *testing.T) {
	onBoth(t, svcConfig, func(t *testing.T, e *svcEnv) {
		data := []byte("the whole representation")
		sess := e.create(-1)
		sess, err := e.appendBytes(sess, 0, data)
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		right := sha256.Sum256(data)
		wrong := sha256.Sum256([]byte("another representation"))
		if err := e.svc.CheckRepr(t.Context(), sess, right[:], true); err != nil {
			t.Fatalf("CheckRepr with the right digest: %v", err)
		}
		if err := e.svc.CheckRepr(t.Context(), sess, wrong[:], false); !errors.Is(err, ErrReprMismatch) {
			t.Fatalf("CheckRepr, nothing stored by the request: got %v, want ErrReprMismatch", err)
		}
		if _, err := e.store.Session(t.Context(), sess.ID); err != nil {
			t.Fatalf("the upload after a mismatch of a request that stored nothing: %v", err)
		}
		if err := e.svc.CheckRepr(t.Context(), sess, wrong[:], true); !errors.Is(err, ErrReprFailed) {
			t.Fatalf("CheckRepr, bytes stored by the request: got %v, want ErrReprFailed", err)
		}
		if _, err := e.store.Session(t.Context(), sess.ID); !errors.Is(err, sessionstore.ErrNotFound) {
			t.Fatalf("the failed upload: got %v, want deleted", err)
		}
	})
}
