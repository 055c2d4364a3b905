package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// directFixture is a direct upload and its waiting asset, expiring in ttl.
func directFixture(ttl time.Duration) (sessionstore.DirectUpload, sessionstore.Asset) {
	id := newID()
	created := now()
	d := sessionstore.DirectUpload{
		ID: id, Account: "acme", Type: "video", MaxSize: 1 << 20, Filename: "clip.mp4",
		ContentType: "video/mp4", Metadata: map[string]string{"customer": "42"},
		AllowedOrigins: []string{"https://app.example"}, Secret: []byte("0123456789abcdef0123456789abcdef"),
		CreatedAt: created, ExpiresAt: time.Now().Add(ttl),
	}
	a := sessionstore.Asset{
		ID: id, Account: "acme", SessionID: id, Type: "video", State: sessionstore.StateWaiting, SizeBytes: -1,
		ContentType: "video/mp4", Filename: "clip.mp4", StorageKey: "uploads/" + id, CreatedAt: created,
	}
	return d, a
}

// claimFixture is the session and uploading asset a claim of d stores.
func claimFixture(d sessionstore.DirectUpload) (sessionstore.Session, sessionstore.Asset) {
	s, a := fixture()
	s.ID, s.AssetID, a.ID, a.SessionID, a.StorageKey = d.ID, d.ID, d.ID, d.ID, "uploads/"+d.ID
	return s, a
}

// testDirectUploads: a direct upload's waiting asset, one claim only,
// expiry of the creation, revocation.
func testDirectUploads(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	d, wa := directFixture(time.Hour)
	if err := st.CreateDirectUpload(ctx, d, wa); err != nil {
		t.Fatalf("CreateDirectUpload: %v", err)
	}
	if err := st.CreateDirectUpload(ctx, d, wa); !errors.Is(err, sessionstore.ErrExists) {
		t.Errorf("CreateDirectUpload of a taken id: got %v, want ErrExists", err)
	}
	got, err := st.DirectUpload(ctx, d.ID)
	if err != nil {
		t.Fatalf("DirectUpload: %v", err)
	}
	if got.Account != d.Account || got.Type != d.Type || got.MaxSize != d.MaxSize || string(got.Secret) != string(d.Secret) ||
		!slices.Equal(got.AllowedOrigins, d.AllowedOrigins) || got.Metadata["customer"] != "42" ||
		!got.ExpiresAt.Equal(d.ExpiresAt) || got.Created || got.Revoked {
		t.Errorf("DirectUpload: got %+v, want %+v", got, d)
	}
	if a := mustAsset(t, st, d.ID); a.State != sessionstore.StateWaiting || a.SizeBytes != -1 {
		t.Errorf("waiting asset: got state %q size %d, want %q and -1", a.State, a.SizeBytes, sessionstore.StateWaiting)
	}
	if _, err := st.DirectUpload(ctx, newID()); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Errorf("DirectUpload of an unknown id: got %v, want ErrNotFound", err)
	}
	s, a := claimFixture(d)
	if err := st.ClaimDirectUpload(ctx, newID(), newID(), time.Now(), s, a); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Errorf("ClaimDirectUpload of an unknown id: got %v, want ErrNotFound", err)
	}
	if err := st.ClaimDirectUpload(ctx, d.ID, newID(), d.ExpiresAt.Add(time.Second), s, a); !errors.Is(err, sessionstore.ErrDirectExpired) {
		t.Errorf("ClaimDirectUpload after its expiry: got %v, want ErrDirectExpired", err)
	}
	if _, err := st.Session(ctx, d.ID); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Errorf("Session after a refused claim: got %v, want ErrNotFound", err)
	}

	// Ten claims race: exactly one creates the upload.
	ok, used := race(t, 10, sessionstore.ErrExists, func(int) error {
		return st.ClaimDirectUpload(ctx, d.ID, newID(), time.Now(), s, a)
	})
	if ok != 1 || used != 9 {
		t.Errorf("racing claims: got %d created and %d ErrExists, want 1 and 9", ok, used)
	}
	if got := mustSession(t, st, d.ID); got.Account != s.Account || got.Length != s.Length {
		t.Errorf("claimed session: got %+v, want %+v", got, s)
	}
	if got := mustAsset(t, st, d.ID); got.State != sessionstore.StateUploading || got.SizeBytes != a.SizeBytes {
		t.Errorf("claimed asset: got state %q size %d, want %q %d", got.State, got.SizeBytes, a.State, a.SizeBytes)
	}
	if got, _ := st.DirectUpload(ctx, d.ID); !got.Created {
		t.Errorf("DirectUpload after the claim: Created false")
	}
	if exp, err := st.Expired(ctx, s.ExpiresAt.Add(time.Second), 100); err != nil || !slices.ContainsFunc(exp, func(e sessionstore.Session) bool { return e.ID == d.ID }) {
		t.Errorf("Expired after the session's expiry: got %v (%v), want the claimed session listed", exp, err)
	}

	// Revoking a used grant keeps its upload.
	rev, err := st.RevokeDirectUpload(ctx, d.ID)
	if err != nil || !rev.Revoked || !rev.Created {
		t.Errorf("RevokeDirectUpload of a used grant: got %+v, %v; want Revoked and Created", rev, err)
	}
	if got := mustAsset(t, st, d.ID); got.State != sessionstore.StateUploading {
		t.Errorf("asset after revoking its used grant: got state %q, want uploading", got.State)
	}

	// Revoking an unused grant: no claim, no asset.
	d2, wa2 := directFixture(time.Hour)
	if err := st.CreateDirectUpload(ctx, d2, wa2); err != nil {
		t.Fatalf("CreateDirectUpload: %v", err)
	}
	if _, err := st.RevokeDirectUpload(ctx, d2.ID); err != nil {
		t.Fatalf("RevokeDirectUpload: %v", err)
	}
	if _, err := st.RevokeDirectUpload(ctx, d2.ID); err != nil {
		t.Errorf("RevokeDirectUpload again: got %v, want nil", err)
	}
	s2, a2 := claimFixture(d2)
	if err := st.ClaimDirectUpload(ctx, d2.ID, newID(), time.Now(), s2, a2); !errors.Is(err, sessionstore.ErrRevoked) {
		t.Errorf("ClaimDirectUpload of a revoked grant: got %v, want ErrRevoked", err)
	}
	if _, err := st.Asset(ctx, d2.ID); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Errorf("Asset of a revoked unused grant: got %v, want ErrNotFound", err)
	}
	if _, err := st.RevokeDirectUpload(ctx, newID()); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Errorf("RevokeDirectUpload of an unknown id: got %v, want ErrNotFound", err)
	}
}

// testDirectClaimOnce: a grant creates one upload, ever. The claim that
// created it may be repeated while the upload exists (a client resends a
// call whose answer was lost) and changes nothing; any other claim is
// refused, and so is every claim once the upload was deleted: the grant's
// own "used" mark refuses them, not the upload's existence.
func testDirectClaimOnce(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	d, wa := directFixture(time.Hour)
	if err := st.CreateDirectUpload(ctx, d, wa); err != nil {
		t.Fatalf("CreateDirectUpload: %v", err)
	}
	s, a := claimFixture(d)
	first := newID()
	if err := st.ClaimDirectUpload(ctx, d.ID, first, time.Now(), s, a); err != nil {
		t.Fatalf("ClaimDirectUpload: %v", err)
	}
	// The upload moves on before the repeat.
	l, err := st.AcquireLease(ctx, d.ID, time.Minute, 0)
	if err != nil {
		t.Fatalf("AcquireLease: %v", err)
	}
	if _, err := st.Commit(ctx, l, sessionstore.Commit{ExpectOffset: 0, NewOffset: 5, Storage: []byte("stored"), Length: -1}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := st.ReleaseLease(ctx, l); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	if err := st.ClaimDirectUpload(ctx, d.ID, first, time.Now(), s, a); err != nil {
		t.Errorf("the same claim again: got %v, want nil", err)
	}
	if got := mustSession(t, st, d.ID); got.Offset != 5 || string(got.Storage) != "stored" {
		t.Errorf("session after the same claim again: offset %d storage %q, want 5 and %q (unchanged)", got.Offset, got.Storage, "stored")
	}
	if err := st.ClaimDirectUpload(ctx, d.ID, newID(), time.Now(), s, a); !errors.Is(err, sessionstore.ErrExists) {
		t.Errorf("another claim of the used grant: got %v, want ErrExists", err)
	}
	if _, err := st.DeleteUpload(ctx, d.ID); err != nil {
		t.Fatalf("DeleteUpload: %v", err)
	}
	for _, c := range []struct{ name, claim string }{{"another claim", newID()}, {"the same claim", first}} {
		if err := st.ClaimDirectUpload(ctx, d.ID, c.claim, time.Now(), s, a); !errors.Is(err, sessionstore.ErrExists) {
			t.Errorf("%s after the upload was deleted: got %v, want ErrExists", c.name, err)
		}
	}
	if _, err := st.Session(ctx, d.ID); !errors.Is(err, sessionstore.ErrNotFound) {
		t.Errorf("Session after claims of a deleted upload: got %v, want ErrNotFound", err)
	}
	if got, err := st.AssetRecord(ctx, d.ID); err != nil || !got.Deleted {
		t.Errorf("asset after claims of a deleted upload: got %+v, %v; want it deleted", got, err)
	}
}
