package upload

import (
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// TestOffsetTakesOverWrite: offset retrieval during a write whose body
// is still coming takes the upload over: the write stops with
// ErrTakenOver and commits what it made durable, and the offset answered
// is accepted by the next append, which completes the upload.
func TestOffsetTakesOverWrite(t *testing.T) {
	onBoth(t, svcConfig, func(t *testing.T, e *svcEnv) {
		data := make([]byte, 64<<10)
		rand.Read(data)
		sess := e.create(int64(len(data)))
		done := e.appendInFlight(t, sess, data)
		waitLeased(t, e, sess.ID)
		got, err := e.svc.Offset(t.Context(), "acme", sess.ID)
		if err != nil {
			t.Fatalf("Offset: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrTakenOver) {
			t.Fatalf("the write: got %v, want ErrTakenOver", err)
		}
		if _, err := e.appendBytes(e.session(sess.ID), got.Offset, data[got.Offset:]); err != nil {
			t.Fatalf("append at the offset retrieved (%d): %v", got.Offset, err)
		}
		e.wantStored(sess.ID, data)
	})
}

// waitLeased waits until a write holds upload id's lease.
// appendInFlight starts an append of data to sess at offset 0 whose body
// is still coming: its first 1000 bytes are sent, the rest never is. The
// returned channel receives the append's error; a release request (a
// takeover, a DELETE) cuts the body.
func (e *svcEnv) appendInFlight(t *testing.T, sess sessionstore.Session, data []byte) <-chan error {
	t.Helper()
	pr, pw := io.Pipe()
	body := newTestBody(pr)
	body.cut = func(cause error) { pr.CloseWithError(cause) }
	done := make(chan error, 1)
	go func() {
		_, err := e.svc.Append(t.Context(), sess, AppendRequest{Offset: 0, Size: int64(len(data)), Length: -1,
			Body: body, Heads: sess.HeadFence, Began: time.Now()})
		done <- err
	}()
	if _, err := pw.Write(data[:1000]); err != nil {
		t.Fatalf("write the first bytes: %v", err)
	}
	return done
}

func waitLeased(t *testing.T, e *svcEnv, id string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if e.session(id).Leased {
			return
		}
	}
	t.Fatalf("no write took upload %s's lease", id)
}

// TestOffsetRefusals: another account's upload is not found, exactly
// like an unknown one; an expired upload is ErrExpired.
func TestOffsetRefusals(t *testing.T) {
	onBoth(t, svcConfig, func(t *testing.T, e *svcEnv) {
		sess := e.create(10)
		for _, c := range []struct{ account, id string }{{"globex", sess.ID}, {"acme", "up-unknown"}} {
			_, err := e.svc.Offset(t.Context(), c.account, c.id)
			if !errors.Is(err, ErrNotFound) || !errors.Is(err, sessionstore.ErrNotFound) {
				t.Fatalf("Offset(%s, %s): got %v, want ErrNotFound", c.account, c.id, err)
			}
		}
		e.expireNow(sess)
		if _, err := e.svc.Offset(t.Context(), "acme", sess.ID); !errors.Is(err, ErrExpired) {
			t.Fatalf("Offset of an expired upload: got %v, want ErrExpired", err)
		}
	})
}
