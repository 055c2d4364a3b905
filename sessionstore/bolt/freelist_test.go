package bolt_test

import (
	"encoding/binary"
	"os"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// TestFreelistCompatible: the store does not write bbolt's freelist at
// each commit (it is rebuilt at open), and a data dir stays readable both
// ways: written by the store, it opens with bbolt's default options (what
// earlier releases used), which write the freelist back; written that way,
// it opens in the store again. bbolt's own check finds every page
// accounted for at each step.
func TestFreelistCompatible(t *testing.T) {
	path := copyFixture(t)
	st := newLocal(t, path)
	checkOldUploads(t, st)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if got := metaFreelist(t, path); got != noFreelist {
		t.Fatalf("meta page's freelist after the store's commits: page %d, want none (%#x)", got, uint64(noFreelist))
	}

	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("open with bbolt's default options: %v", err)
	}
	checkBolt(t, db)
	err = db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("freelist-test"), []byte("x"))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := metaFreelist(t, path); got == noFreelist {
		t.Fatal("bbolt's default options left the meta page without freelist")
	}

	st = newLocal(t, path)
	checkOldAccount(t, st)
	checkOldQueues(t, st)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	checkBolt(t, db)
}

// noFreelist is the freelist page id of a meta page whose freelist was
// not written.
const noFreelist = ^uint64(0)

// metaFreelist reads the freelist page id of the file's current meta page
// (the one of the two with the higher transaction id). A meta page is a
// 16-byte page header, then magic, version, page size and flags (4 bytes
// each), the root bucket (16), the freelist page id, the high water mark
// and the transaction id (8 each). The file's page size is the OS page
// size bbolt created it with; both meta pages sit in the first two pages.
func metaFreelist(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(binary.LittleEndian.Uint32(b[16+8:]))
	var best, txid uint64
	for i := range 2 {
		m := b[i*pageSize+16:]
		if tx := binary.LittleEndian.Uint64(m[48:]); i == 0 || tx > txid {
			best, txid = binary.LittleEndian.Uint64(m[32:]), tx
		}
	}
	return best
}

// checkBolt runs bbolt's consistency check and fails on what it finds.
func checkBolt(t *testing.T, db *bbolt.DB) {
	t.Helper()
	err := db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("bbolt check: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
