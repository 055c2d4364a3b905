package upload

import (
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// grant stores a direct upload grant of "acme" and returns it.
func (e *svcEnv) grant() sessionstore.DirectUpload {
	e.t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	d := sessionstore.DirectUpload{ID: "up-" + rand.Text(), Account: "acme", Type: "video", Secret: []byte("s"),
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	a := sessionstore.Asset{ID: d.ID, Account: "acme", SessionID: d.ID, Type: "video", State: sessionstore.StateWaiting,
		SizeBytes: -1, StorageKey: "uploads/" + d.ID, CreatedAt: now}
	if err := e.store.CreateDirectUpload(e.t.Context(), d, a); err != nil {
		e.t.Fatalf("CreateDirectUpload: %v", err)
	}
	return d
}

// claim is a creation through grant d of an upload of length bytes.
func (e *svcEnv) claim(d sessionstore.DirectUpload, length int64) (sessionstore.Session, error) {
	now := time.Now().UTC().Truncate(time.Second)
	sess := sessionstore.Session{ID: d.ID, Account: d.Account, AssetID: d.ID, Length: length, NextPart: 1,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	a := sessionstore.Asset{ID: d.ID, Account: d.Account, SessionID: d.ID, Type: "video",
		State: sessionstore.StateUploading, SizeBytes: length, StorageKey: "uploads/" + d.ID, CreatedAt: now}
	err := e.svc.Claim(e.t.Context(), &sess, &a, &d)
	return sess, err
}

// TestClaim: a grant creates one upload, with its storage, that takes
// bytes; a second creation is refused (ErrDirectUsed), and so are a
// revoked grant's and an unknown one's.
func TestClaim(t *testing.T) {
	onBoth(t, svcConfig, func(t *testing.T, e *svcEnv) {
		d := e.grant()
		sess, err := e.claim(d, 10)
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		if StoragePending(sess) {
			t.Fatal("the claimed upload has no storage")
		}
		if _, err := e.appendBytes(e.session(sess.ID), 0, []byte("0123456789")); err != nil {
			t.Fatalf("append to the claimed upload: %v", err)
		}
		e.wantStored(sess.ID, []byte("0123456789"))
		if _, err := e.claim(d, 10); !errors.Is(err, ErrDirectUsed) {
			t.Fatalf("a second creation: got %v, want ErrDirectUsed", err)
		}
		d.Created = true
		if _, err := e.claim(d, 10); !errors.Is(err, ErrDirectUsed) {
			t.Fatalf("a second creation (grant read as used): got %v, want ErrDirectUsed", err)
		}
		r := e.grant()
		if _, err := e.store.RevokeDirectUpload(t.Context(), r.ID); err != nil {
			t.Fatalf("RevokeDirectUpload: %v", err)
		}
		if _, err := e.claim(r, 10); !errors.Is(err, ErrDirectRevoked) {
			t.Fatalf("a revoked grant: got %v, want ErrDirectRevoked", err)
		}
		if _, err := e.claim(sessionstore.DirectUpload{ID: "up-unknown", Account: "acme"}, 10); !errors.Is(err, ErrDirectUnknown) {
			t.Fatalf("an unknown grant: got %v, want ErrDirectUnknown", err)
		}
		if _, usage, err := e.store.Quota(t.Context(), "acme"); err != nil || usage.Uploads != 0 || usage.BytesStored != 10 {
			t.Fatalf("quota: %+v (%v), want only the completed upload's 10 bytes", usage, err)
		}
	})
}
