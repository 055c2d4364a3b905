package upload

import (
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// partialUpload creates a partial upload of account with data, through
// the service (Create, Append).
func (e *svcEnv) partialUpload(account string, data []byte) sessionstore.Session {
	e.t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	length := int64(len(data))
	if length == 0 {
		length = -1 // deferred: an open partial
	}
	sess := sessionstore.Session{ID: "up-" + rand.Text(), Account: account, Length: length, Partial: true,
		NextPart: 1, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := e.svc.Create(e.t.Context(), &sess, sessionstore.Asset{}); err != nil {
		e.t.Fatalf("Create partial: %v", err)
	}
	if len(data) > 0 {
		var err error
		if sess, err = e.appendBytes(sess, 0, data); err != nil {
			e.t.Fatalf("append to partial: %v", err)
		}
	}
	return sess
}

// TestConcat: a final upload of two partials (one listed twice) is the
// concatenation of their bytes, complete with its SHA-256; a partial that
// is not complete, not partial or another account's is refused, naming
// it, and nothing is created.
func TestConcat(t *testing.T) {
	onBoth(t, svcConfig, func(t *testing.T, e *svcEnv) {
		a, b := make([]byte, 70<<10), make([]byte, 30<<10)
		rand.Read(a)
		rand.Read(b)
		pa, pb := e.partialUpload("acme", a), e.partialUpload("acme", b)
		final := func(ids ...string) (sessionstore.Session, error) {
			now := time.Now().UTC().Truncate(time.Second)
			id := "up-" + rand.Text()
			sess := sessionstore.Session{ID: id, Account: "acme", AssetID: id, ConcatOf: ids, NextPart: 1,
				CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
			asset := sessionstore.Asset{ID: id, Account: "acme", SessionID: id, Type: "video",
				State: sessionstore.StateUploading, StorageKey: "uploads/" + id, CreatedAt: now}
			err := e.svc.Concat(t.Context(), &sess, asset)
			return sess, err
		}
		sess, err := final(pa.ID, pb.ID, pa.ID)
		if err != nil {
			t.Fatalf("Concat: %v", err)
		}
		want := append(append(append([]byte{}, a...), b...), a...)
		e.wantStored(sess.ID, want)

		open := e.partialUpload("acme", nil)
		if _, err := e.appendBytes(open, 0, []byte("0123"), func(r *AppendRequest) { r.Length = 10 }); err != nil {
			t.Fatalf("append to the open partial: %v", err)
		}
		other := e.partialUpload("globex", b)
		for _, c := range []struct {
			id, reason string
		}{{open.ID, ConcatNotComplete}, {other.ID, ConcatNotFound}, {sess.ID, ConcatNotPartial}} {
			_, err := final(pa.ID, c.id)
			ce, ok := errors.AsType[*ConcatError](err)
			if !ok || ce.ID != c.id || ce.Reason != c.reason || !errors.Is(err, ErrConcat) {
				t.Fatalf("Concat with %s: got %v, want ConcatError{%s, %s}", c.id, err, c.id, c.reason)
			}
		}
	})
}
