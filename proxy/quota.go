package proxy

import (
	"context"
	"fmt"

	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// Per-account quotas. Each upload in progress holds a
// reservation in the store: made before its session is stored (its
// Upload-Length, or 0 for a deferred length), grown by the writes of a
// deferred length before their bytes are read, grown to the whole length
// before a request of either protocol sets it (upload.Service.ApplyLength), turned into
// stored bytes when the upload completes, and dropped by DELETE and
// expiry. The store checks and reserves atomically, so the limits hold
// across nodes.

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

// quotaAPI serves GET /api/v1/quota.
type quotaAPI struct {
	store interface {
		Quota(ctx context.Context, account string) (sessionstore.QuotaLimits, sessionstore.QuotaUsage, error)
	}
	// defaults are the limits of accounts without their own.
	defaults sessionstore.QuotaLimits
}

// serve serves GET /api/v1/quota: the account's limits (its own or
// the server's defaults) and usage.
func (qa *quotaAPI) serve(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, _ *params) error {
	account := rq.account
	l, u, err := qa.store.Quota(ctx, account)
	if err != nil {
		return fmt.Errorf("proxy: load quota: %w", err)
	}
	l = l.Resolve(qa.defaults)
	rc.Response.Header.Set("Cache-Control", "no-store")
	writeJSON(rc, fasthttp.StatusOK, &quotaJSON{Account: account, Usage: u, Limits: quotaLimitsJSON{
		BytesStored: limitJSON(l.BytesStored), Uploads: limitJSON(l.Uploads), BytesReserved: limitJSON(l.BytesReserved),
	}})
	return nil
}
