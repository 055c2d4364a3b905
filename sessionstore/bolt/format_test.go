package bolt_test

import (
	"encoding/binary"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/roughy/ingest/sessionstore"
)

// TestPartRecordFormat pins the bbolt file's part records: a part is
// stored as the JSON of its fields by their Go names, and records written
// before checksums were kept (no Checksum field) still read back. An
// existing data dir must keep opening, so a change to the Part type that
// changes its JSON fails here.
func TestPartRecordFormat(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "roughy.db")
	st := newLocal(t, path)
	now := time.Now().UTC().Truncate(time.Second)
	s := sessionstore.Session{ID: "s1", Account: "acme", AssetID: "s1", Length: 100, NextPart: 1,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	a := sessionstore.Asset{ID: "s1", Account: "acme", SessionID: "s1", Type: "video",
		State: sessionstore.StateUploading, SizeBytes: 100, CreatedAt: now}
	if err := st.CreateUpload(ctx, s, a); err != nil {
		t.Fatal(err)
	}
	l, err := st.AcquireLease(ctx, "s1", time.Minute, 1)
	if err != nil {
		t.Fatal(err)
	}
	written := sessionstore.Part{Number: 2, ETag: `"e"`, Size: 10, Offset: 0, Checksum: "AAAAAA=="}
	if _, err := st.Commit(ctx, l, sessionstore.Commit{NewOffset: 10, Length: -1,
		Parts: []sessionstore.Part{written}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	const want = `{"Number":2,"ETag":"\"e\"","Size":10,"Offset":0,"Checksum":"AAAAAA=="}`
	const old = `{"Number":3,"ETag":"\"old\"","Size":5,"Offset":10}`
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("parts")).Bucket([]byte("s1"))
		if b == nil {
			t.Fatal(`no bucket parts/s1`)
		}
		k, v := b.Cursor().First()
		if string(v) != want {
			t.Errorf("stored part record: got %s, want %s", v, want)
		}
		next := make([]byte, 8)
		binary.BigEndian.PutUint64(next, binary.BigEndian.Uint64(k)+1)
		return b.Put(next, []byte(old))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	st2 := newLocal(t, path)
	t.Cleanup(func() {
		if err := st2.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	got, err := st2.Parts(ctx, "s1")
	wantParts := []sessionstore.Part{written, {Number: 3, ETag: `"old"`, Size: 5, Offset: 10}}
	if err != nil || !slices.Equal(got, wantParts) {
		t.Fatalf("parts read back: got %+v, %v; want %+v", got, err, wantParts)
	}
}
