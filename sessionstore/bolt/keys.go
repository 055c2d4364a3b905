package bolt

import (
	"context"
	"fmt"
	"sync"

	bbolt "go.etcd.io/bbolt"

	"github.com/roughy/ingest/sessionstore"
)

// CreateKey stores a key; ErrExists if its id or hash is taken.
func (l *Store) CreateKey(ctx context.Context, k sessionstore.Key) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.update("create key", func(tx *bbolt.Tx) error {
		keys, byHash := tx.Bucket(boltBucketKeys), tx.Bucket(boltBucketKeyHash)
		if keys.Get([]byte(k.ID)) != nil {
			return fmt.Errorf("key id %s: %w", k.ID, sessionstore.ErrExists)
		}
		if byHash.Get([]byte(k.Hash)) != nil {
			return fmt.Errorf("key %s: hash: %w", k.ID, sessionstore.ErrExists)
		}
		if err := byHash.Put([]byte(k.Hash), []byte(k.ID)); err != nil {
			return err
		}
		return boltPut(keys, []byte(k.ID), k)
	})
}

// KeyByHash finds an unrevoked key by the hash of its secret.
func (l *Store) KeyByHash(ctx context.Context, hash string) (sessionstore.Key, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.Key{}, err
	}
	var k sessionstore.Key
	err := l.view("key by hash", func(tx *bbolt.Tx) error {
		id := tx.Bucket(boltBucketKeyHash).Get([]byte(hash))
		if id == nil {
			return sessionstore.ErrNotFound
		}
		if err := boltGet(tx.Bucket(boltBucketKeys), id, &k); err != nil {
			return err
		}
		if k.Revoked {
			return sessionstore.ErrNotFound
		}
		return nil
	})
	return k, err
}

// Keys lists every key, revoked ones too, by id.
func (l *Store) Keys(ctx context.Context) ([]sessionstore.Key, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []sessionstore.Key
	err := l.view("keys", func(tx *bbolt.Tx) error {
		var err error
		out, err = boltList[sessionstore.Key](tx.Bucket(boltBucketKeys))
		return err
	})
	return out, err
}

// RevokeKey marks a key revoked; ErrNotFound if unknown.
func (l *Store) RevokeKey(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var hash string
	err := l.update("revoke key", func(tx *bbolt.Tx) error {
		var k sessionstore.Key
		if err := boltGet(tx.Bucket(boltBucketKeys), []byte(id), &k); err != nil {
			return err
		}
		k.Revoked, hash = true, k.Hash
		return boltPut(tx.Bucket(boltBucketKeys), []byte(id), k)
	})
	if err != nil {
		return err
	}
	l.mu.Lock()
	watchers := make([]*localWatcher, 0, len(l.watchers))
	for w := range l.watchers {
		watchers = append(watchers, w)
	}
	l.mu.Unlock()
	for _, w := range watchers {
		w.call(hash)
	}
	return nil
}

// localWatcher is one WatchKeyRevocations caller.
type localWatcher struct {
	mu   sync.Mutex // one call at a time, none after done
	fn   func(hash string)
	done bool
}

func (w *localWatcher) call(hash string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.fn(hash)
	}
}

// WatchKeyRevocations calls fn for every key revoked through this store
// (one process holds the file, so that is every revocation) until ctx
// ends or the store is closed. Nothing can be missed: fn("") never comes.
func (l *Store) WatchKeyRevocations(ctx context.Context, fn func(hash string)) error {
	w := &localWatcher{fn: fn}
	l.mu.Lock()
	if l.watchers == nil {
		l.watchers = map[*localWatcher]struct{}{}
	}
	l.watchers[w] = struct{}{}
	l.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-l.closed:
	}
	l.mu.Lock()
	delete(l.watchers, w)
	l.mu.Unlock()
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
	return nil
}
