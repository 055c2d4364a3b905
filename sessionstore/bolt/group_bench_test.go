package bolt

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// BenchmarkGroupCommitFreelist: 32 writers through the group commit, each
// operation a 600-byte record put, an index put and a delete (the shape of
// a creation and an expiry), on a fresh file and on an aged one (100,000
// records made and deleted: the free pages a store that expired many
// uploads has), with bbolt's freelist written at each commit (its default)
// and rebuilt at open instead (NoFreelistSync, the store's option). It
// reports milliseconds per transaction and the time to open the file.
//
//	go test ./sessionstore/bolt -run '^$' -bench GroupCommitFreelist -benchtime 4000x
func BenchmarkGroupCommitFreelist(b *testing.B) {
	for _, aged := range []bool{false, true} {
		for _, noSync := range []bool{false, true} {
			name := fmt.Sprintf("aged=%v/noFreelistSync=%v", aged, noSync)
			b.Run(name, func(b *testing.B) { benchGroupCommit(b, aged, noSync) })
		}
	}
}

func benchGroupCommit(b *testing.B, aged, noSync bool) {
	path := filepath.Join(b.TempDir(), "bench.db")
	opts := func() *bbolt.Options {
		o := &bbolt.Options{Timeout: 2 * time.Second}
		if noSync {
			o = boltOptions()
		}
		return o
	}
	db, err := bbolt.Open(path, 0o600, opts())
	if err != nil {
		b.Fatal(err)
	}
	bucket, index := []byte("records"), []byte("index")
	val := make([]byte, 600)
	key := func(i uint64) []byte { return binary.BigEndian.AppendUint64(nil, i) }
	err = db.Update(func(tx *bbolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucket); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(index)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	if aged {
		const records, perTx = 100_000, 5_000
		for _, del := range []bool{false, true} {
			for start := uint64(0); start < records; start += perTx {
				err := db.Update(func(tx *bbolt.Tx) error {
					for i := start; i < start+perTx; i++ {
						k := key(1<<40 + i)
						var err error
						if del {
							err = tx.Bucket(bucket).Delete(k)
						} else {
							err = tx.Bucket(bucket).Put(k, val)
						}
						if err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	began := time.Now()
	if db, err = bbolt.Open(path, 0o600, opts()); err != nil {
		b.Fatal(err)
	}
	opened := time.Since(began)
	defer db.Close()
	g := &boltGroup{db: db}

	const writers = 32
	var next sync.Mutex
	n := uint64(0)
	b.ResetTimer()
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for {
				next.Lock()
				if n >= uint64(b.N) {
					next.Unlock()
					return
				}
				i := n
				n++
				next.Unlock()
				err := g.update(func(tx *bbolt.Tx) error {
					if err := tx.Bucket(bucket).Put(key(i), val); err != nil {
						return err
					}
					if err := tx.Bucket(index).Put(key(i), key(i)); err != nil {
						return err
					}
					if i >= writers {
						return tx.Bucket(bucket).Delete(key(i - writers))
					}
					return nil
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := b.Elapsed()
	if c := g.commits.Load(); c > 0 {
		b.ReportMetric(float64(elapsed.Microseconds())/1000/float64(c), "ms/txn")
		b.ReportMetric(float64(b.N)/float64(c), "ops/txn")
	}
	b.ReportMetric(float64(opened.Microseconds())/1000, "ms-open")
}
