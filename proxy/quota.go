package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// Per-account quotas. Each upload in progress holds a
// reservation in the store: made before its session is stored (its
// Upload-Length, or 0 for a deferred length), grown by the writes of a
// deferred length before their bytes are read, grown to the whole length
// before a request of either protocol sets it (applyLength), turned into
// stored bytes when the upload completes, and dropped by DELETE and
// expiry. The store checks and reserves atomically, so the limits hold
// across nodes.

// quotaSweepGrace is how old a hold must be before the janitor checks it
// against its upload: a creation reserves a moment before it stores the
// session, and must not be mistaken for one that crashed in between.
const quotaSweepGrace = time.Minute

// quotaSweepBatch bounds the holds one janitor round checks.
const quotaSweepBatch = 100

// quotaCleanupTimeout bounds a settle or release, which run even when the
// request is canceled (what they undo must not stay counted).
const quotaCleanupTimeout = 5 * time.Second

// quotaExceeded is the 403 of a refused reservation; it names the limit.
func quotaExceeded(qe *sessionstore.QuotaError) *Error {
	var msg string
	switch qe.Limit {
	case sessionstore.QuotaUploads:
		msg = fmt.Sprintf("the account's quota %q is %d uploads in progress and %d are in progress; complete or delete one first",
			qe.Limit, qe.Max, qe.Used)
	case sessionstore.QuotaBytesReserved:
		msg = fmt.Sprintf("the account's quota %q is %d bytes; its uploads in progress reserve %d and this request needs %d more",
			qe.Limit, qe.Max, qe.Used, qe.Want)
	default:
		msg = fmt.Sprintf("the account's quota %q is %d bytes; %d are stored or reserved and this request needs %d more",
			qe.Limit, qe.Max, qe.Used, qe.Want)
	}
	return codeQuotaExceeded.with(msg)
}

// reserveQuota grows upload id's reservation to n bytes (counting the
// upload on its first reservation), or answers 403 quota_exceeded.
func (s *Server) reserveQuota(ctx context.Context, account, id string, n int64) error {
	err := s.store.ReserveQuota(ctx, account, id, n, s.cfg.QuotaDefaults)
	if qe, ok := errors.AsType[*sessionstore.QuotaError](err); ok {
		return quotaExceeded(qe)
	}
	if err != nil {
		return fmt.Errorf("proxy: reserve quota: %w", err)
	}
	return nil
}

// settleQuota turns a completed upload's reservation into size stored
// bytes. A failure is logged: the janitor settles the hold later.
func (s *Server) settleQuota(ctx context.Context, account, id string, size int64) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), quotaCleanupTimeout)
	defer cancel()
	if err := s.store.SettleQuota(cctx, account, id, size); err != nil {
		s.log.Warn("quota: settle completed upload", "upload_id", id, "account", account, "err", err)
	}
}

// releaseQuota drops what upload id holds of its account's quota
// (deleted, expired, or its creation failed). A failure is logged: the
// janitor releases a hold whose upload is gone later.
func (s *Server) releaseQuota(ctx context.Context, account, id string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), quotaCleanupTimeout)
	defer cancel()
	if err := s.store.ReleaseQuota(cctx, account, id); err != nil {
		s.log.Warn("quota: release", "upload_id", id, "account", account, "err", err)
	}
}

// sweepQuota repairs holds a crash left behind (a node died between
// reserving and creating, completing and settling, deleting and
// releasing): a hold not touched for quotaSweepGrace is checked against
// its upload, released when the upload is gone, settled when it is
// complete, and touched when it is still in progress.
func (s *Server) sweepQuota(ctx context.Context, now time.Time) {
	holds, err := s.store.QuotaHolds(ctx, now.Add(-quotaSweepGrace), quotaSweepBatch)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("janitor: list quota holds", "err", err)
		}
		return
	}
	for _, h := range holds {
		sess, err := s.store.Session(ctx, h.UploadID)
		switch {
		case errors.Is(err, sessionstore.ErrNotFound) || err == nil && sess.Account != h.Account:
			err = s.store.ReleaseQuota(ctx, h.Account, h.UploadID)
		case err != nil:
		case sess.Completed:
			err = s.store.SettleQuota(ctx, h.Account, h.UploadID, sess.Offset)
		default:
			err = s.store.TouchQuota(ctx, h.Account, h.UploadID)
		}
		if err != nil {
			s.log.Warn("janitor: repair quota hold", "upload_id", h.UploadID, "account", h.Account, "err", err)
		}
	}
}

// quotaLimitsJSON shows limits; null is unlimited.
type quotaLimitsJSON struct {
	BytesStored   *int64 `json:"bytes_stored"`
	Uploads       *int64 `json:"uploads"`
	BytesReserved *int64 `json:"bytes_reserved"`
}

// quotaJSON is GET /api/v1/quota's body.
type quotaJSON struct {
	Account string                  `json:"account"`
	Limits  quotaLimitsJSON         `json:"limits"`
	Usage   sessionstore.QuotaUsage `json:"usage"`
}

func limitJSON(v int64) *int64 {
	switch {
	case v == sessionstore.QuotaZero:
		v = 0
	case v <= 0:
		return nil
	}
	return &v
}

// serveQuota serves GET /api/v1/quota: the account's limits (its own or
// the server's defaults) and usage.
func (s *Server) serveQuota(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, _ *params) error {
	account := rq.account
	l, u, err := s.store.Quota(ctx, account)
	if err != nil {
		return fmt.Errorf("proxy: load quota: %w", err)
	}
	l = l.Resolve(s.cfg.QuotaDefaults)
	rc.Response.Header.Set("Cache-Control", "no-store")
	writeJSON(rc, fasthttp.StatusOK, &quotaJSON{Account: account, Usage: u, Limits: quotaLimitsJSON{
		BytesStored: limitJSON(l.BytesStored), Uploads: limitJSON(l.Uploads), BytesReserved: limitJSON(l.BytesReserved),
	}})
	return nil
}
