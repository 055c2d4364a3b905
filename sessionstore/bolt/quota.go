package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/roughy/ingest/sessionstore"
)

// Quota buckets of the bbolt file, made by the first quota write (a read
// finds none before: nothing reserved yet).
var (
	boltBucketQuota       = []byte("quota")       // account → JSON localQuota
	boltBucketQuotaHolds  = []byte("quotaholds")  // account + 0 + upload id → JSON localHold
	boltBucketQuotaStored = []byte("quotastored") // account + 0 + upload id → boltBE64(size)
)

// localQuota is one account's limits and usage. Limits fields are
// QuotaDefault unless SetQuota set them.
type localQuota struct {
	Limits sessionstore.QuotaLimits
	Usage  sessionstore.QuotaUsage
}

// localHold is one upload's reservation.
type localHold struct {
	Bytes int64
	Since time.Time
}

func newLocalQuota() localQuota {
	return localQuota{Limits: sessionstore.QuotaLimits{BytesStored: sessionstore.QuotaDefault, Uploads: sessionstore.QuotaDefault, BytesReserved: sessionstore.QuotaDefault}}
}

func boltQuotaKey(account, uploadID string) []byte {
	return append(append([]byte(account), 0), uploadID...)
}

// boltQuota reads an account's record from b (which may be nil).
func boltQuota(b *bbolt.Bucket, account string) (localQuota, error) {
	q := newLocalQuota()
	if b == nil {
		return q, nil
	}
	if err := boltGet(b, []byte(account), &q); err != nil && err != sessionstore.ErrNotFound {
		return q, err
	}
	return q, nil
}

// boltQuotaBuckets makes (once) and returns the three quota buckets.
func boltQuotaBuckets(tx *bbolt.Tx) (quota, holds, stored *bbolt.Bucket, err error) {
	if quota, err = tx.CreateBucketIfNotExists(boltBucketQuota); err != nil {
		return
	}
	if holds, err = tx.CreateBucketIfNotExists(boltBucketQuotaHolds); err != nil {
		return
	}
	stored, err = tx.CreateBucketIfNotExists(boltBucketQuotaStored)
	return
}

// quotaUpdate runs fn in one write transaction with the quota buckets and
// the key of the account's upload.
func (l *Store) quotaUpdate(ctx context.Context, op, account, uploadID string, fn func(qb, hb, sb *bbolt.Bucket, key []byte) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.update(op, func(tx *bbolt.Tx) error {
		qb, hb, sb, err := boltQuotaBuckets(tx)
		if err != nil {
			return err
		}
		return fn(qb, hb, sb, boltQuotaKey(account, uploadID))
	})
}

// SetQuota replaces the account's limits.
func (l *Store) SetQuota(ctx context.Context, account string, lim sessionstore.QuotaLimits) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.update("set quota", func(tx *bbolt.Tx) error {
		qb, _, _, err := boltQuotaBuckets(tx)
		if err != nil {
			return err
		}
		q, err := boltQuota(qb, account)
		if err != nil {
			return err
		}
		q.Limits = localNormLimits(lim)
		return boltPut(qb, []byte(account), q)
	})
}

// localNormLimits maps every negative field to QuotaDefault.
func localNormLimits(l sessionstore.QuotaLimits) sessionstore.QuotaLimits {
	norm := func(v int64) int64 {
		if v == sessionstore.QuotaZero {
			return v
		}
		return max(v, sessionstore.QuotaDefault)
	}
	return sessionstore.QuotaLimits{BytesStored: norm(l.BytesStored), Uploads: norm(l.Uploads), BytesReserved: norm(l.BytesReserved)}
}

// Quota returns the account's limits and usage.
func (l *Store) Quota(ctx context.Context, account string) (sessionstore.QuotaLimits, sessionstore.QuotaUsage, error) {
	if err := ctx.Err(); err != nil {
		return sessionstore.QuotaLimits{}, sessionstore.QuotaUsage{}, err
	}
	var q localQuota
	err := l.view("quota", func(tx *bbolt.Tx) error {
		var err error
		q, err = boltQuota(tx.Bucket(boltBucketQuota), account)
		return err
	})
	return q.Limits, q.Usage, err
}

// ReserveQuota checks and grows the upload's hold in one transaction:
// bbolt serialises writers, so no other reservation of the account runs
// between the check and the write.
func (l *Store) ReserveQuota(ctx context.Context, account, uploadID string, n int64, defaults sessionstore.QuotaLimits) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// The refusal is returned as it is, not as a backend failure.
	var refused error
	err := l.update("reserve quota", func(tx *bbolt.Tx) error {
		// Set on every run: the function may run more than once.
		refused = boltReserveQuota(tx, account, uploadID, n, defaults)
		return refused
	})
	if _, ok := errors.AsType[*sessionstore.QuotaError](refused); ok {
		return refused
	}
	return err
}

// boltReserveQuota is ReserveQuota inside tx: a *QuotaError when refused.
func boltReserveQuota(tx *bbolt.Tx, account, uploadID string, n int64, defaults sessionstore.QuotaLimits) error {
	qb, hb, sb, err := boltQuotaBuckets(tx)
	if err != nil {
		return err
	}
	key := boltQuotaKey(account, uploadID)
	if sb.Get(key) != nil {
		return nil // completed: its bytes are stored already
	}
	q, err := boltQuota(qb, account)
	if err != nil {
		return err
	}
	var h localHold
	newUpload := hb.Get(key) == nil
	if !newUpload {
		if err := boltGet(hb, key, &h); err != nil {
			return err
		}
	}
	want := max(n-h.Bytes, 0)
	var refused error
	if q.Usage, refused = sessionstore.QuotaCheck(q.Limits.Resolve(defaults), q.Usage, newUpload, want); refused != nil {
		return refused
	}
	h.Bytes += want
	h.Since = time.Now().UTC()
	if err := boltPut(hb, key, h); err != nil {
		return err
	}
	return boltPut(qb, []byte(account), q)
}

// SettleQuota turns the upload's hold into stored bytes.
func (l *Store) SettleQuota(ctx context.Context, account, uploadID string, size int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.update("settle quota", func(tx *bbolt.Tx) error { return boltSettleQuota(tx, account, uploadID, size) })
}

// boltSettleQuota is SettleQuota inside tx.
func boltSettleQuota(tx *bbolt.Tx, account, uploadID string, size int64) error {
	qb, hb, sb, err := boltQuotaBuckets(tx)
	if err != nil {
		return err
	}
	key := boltQuotaKey(account, uploadID)
	if sb.Get(key) != nil {
		return nil
	}
	q, err := boltDropHold(qb, hb, account, key)
	if err != nil {
		return err
	}
	q.Usage.BytesStored += size
	if err := sb.Put(key, boltBE64(uint64(size))); err != nil {
		return err
	}
	return boltPut(qb, []byte(account), q)
}

// boltDropHold reads the account's record, deletes the hold at key, if
// any, and takes it off the record's usage (which the caller stores).
func boltDropHold(qb, hb *bbolt.Bucket, account string, key []byte) (localQuota, error) {
	q, err := boltQuota(qb, account)
	if err != nil || hb.Get(key) == nil {
		return q, err
	}
	var h localHold
	if err := boltGet(hb, key, &h); err != nil {
		return q, err
	}
	q.Usage.Uploads = max(q.Usage.Uploads-1, 0)
	q.Usage.BytesReserved = max(q.Usage.BytesReserved-h.Bytes, 0)
	return q, hb.Delete(key)
}

// ReleaseQuota drops the upload's hold or stored bytes.
func (l *Store) ReleaseQuota(ctx context.Context, account, uploadID string) error {
	return l.quotaUpdate(ctx, "release quota", account, uploadID, func(qb, hb, sb *bbolt.Bucket, key []byte) error {
		if hb.Get(key) == nil && sb.Get(key) == nil {
			return nil
		}
		q, err := boltDropHold(qb, hb, account, key)
		if err != nil {
			return err
		}
		if v := sb.Get(key); len(v) == 8 {
			q.Usage.BytesStored = max(q.Usage.BytesStored-int64(binary.BigEndian.Uint64(v)), 0)
			if err := sb.Delete(key); err != nil {
				return err
			}
		}
		return boltPut(qb, []byte(account), q)
	})
}

// TouchQuota restamps the upload's hold, if it has one.
func (l *Store) TouchQuota(ctx context.Context, account, uploadID string) error {
	return l.quotaUpdate(ctx, "touch quota", account, uploadID, func(_, hb, _ *bbolt.Bucket, key []byte) error {
		if hb.Get(key) == nil {
			return nil
		}
		var h localHold
		if err := boltGet(hb, key, &h); err != nil {
			return err
		}
		h.Since = time.Now().UTC()
		return boltPut(hb, key, h)
	})
}

// QuotaHolds lists the oldest holds made or touched before before. It
// reads every hold: there is one per upload in progress on this node.
func (l *Store) QuotaHolds(ctx context.Context, before time.Time, limit int) ([]sessionstore.QuotaHold, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []sessionstore.QuotaHold
	err := l.view("quota holds", func(tx *bbolt.Tx) error {
		hb := tx.Bucket(boltBucketQuotaHolds)
		if hb == nil {
			return nil
		}
		return hb.ForEach(func(k, _ []byte) error {
			var h localHold
			if err := boltGet(hb, k, &h); err != nil {
				return err
			}
			if !h.Since.Before(before) {
				return nil
			}
			account, id, ok := bytes.Cut(k, []byte{0})
			if !ok {
				return fmt.Errorf("quota hold key %q", k)
			}
			out = append(out, sessionstore.QuotaHold{Account: string(account), UploadID: string(id), Since: h.Since})
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	if len(out) > limit {
		out = out[:max(limit, 0)]
	}
	return out, err
}
