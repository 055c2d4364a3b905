package sessionstore

import (
	"errors"
	"fmt"
	"time"
)

// Per-account quotas (issue 11). Three limits, each checked when an
// upload reserves bytes:
//
//   - uploads: uploads in progress (created, neither completed, deleted
//     nor expired);
//   - bytes reserved: the bytes those uploads may still grow to (their
//     Upload-Length, or for a deferred length what they were allowed to
//     grow to so far);
//   - bytes stored: completed uploads plus the bytes reserved, so that
//     uploads in progress cannot together overrun what the account may
//     keep.
//
// Every upload in progress holds one reservation, keyed by its id in the
// account's own records. Completion turns it into a stored record
// (SettleQuota), DELETE and expiry drop it (ReleaseQuota). Both are
// idempotent: the record, not the caller, says what is left to undo.

// QuotaDefault in a QuotaLimits field stored for an account means "the
// server's default for this limit" (the serve flags); 0 means unlimited.
const QuotaDefault int64 = -1

// Names of the limits, as a QuotaError and the API name them.
const (
	QuotaBytesStored   = "bytes_stored"
	QuotaUploads       = "uploads"
	QuotaBytesReserved = "bytes_reserved"
)

// ErrQuotaExceeded: the reservation would pass one of the account's
// limits; ReserveQuota returns it as a *QuotaError.
var ErrQuotaExceeded = errors.New("sessionstore: quota exceeded")

// QuotaLimits are an account's caps. 0 is unlimited; QuotaDefault (only
// in what SetQuota stores) defers to the server's default.
type QuotaLimits struct {
	BytesStored   int64 `json:"bytes_stored"`
	Uploads       int64 `json:"uploads"`
	BytesReserved int64 `json:"bytes_reserved"`
}

// Resolve fills the fields of l that are QuotaDefault from defaults.
func (l QuotaLimits) Resolve(defaults QuotaLimits) QuotaLimits {
	pick := func(v, d int64) int64 {
		if v < 0 {
			return max(d, 0)
		}
		return v
	}
	return QuotaLimits{
		BytesStored:   pick(l.BytesStored, defaults.BytesStored),
		Uploads:       pick(l.Uploads, defaults.Uploads),
		BytesReserved: pick(l.BytesReserved, defaults.BytesReserved),
	}
}

// QuotaUsage is what an account uses of its limits.
type QuotaUsage struct {
	BytesStored   int64 `json:"bytes_stored"`
	Uploads       int64 `json:"uploads"`
	BytesReserved int64 `json:"bytes_reserved"`
}

// QuotaError is ReserveQuota's refusal: Want more bytes (or one more
// upload) would take Used past Max of limit Limit.
// errors.Is(err, ErrQuotaExceeded) holds for it.
type QuotaError struct {
	Limit string
	Max   int64
	Used  int64
	Want  int64
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("sessionstore: quota %s exceeded: %d used + %d wanted > %d", e.Limit, e.Used, e.Want, e.Max)
}

// Is makes errors.Is(err, ErrQuotaExceeded) true.
func (e *QuotaError) Is(target error) bool { return target == ErrQuotaExceeded }

// QuotaHold is one upload's reservation, as QuotaHolds lists it for the
// janitor's reconciliation.
type QuotaHold struct {
	Account  string
	UploadID string
	// Since is when the hold was made or last touched.
	Since time.Time
}

// quotaCheck applies a reservation of want more bytes (and one more
// upload when newUpload) to u under limits l, or says which limit it
// would pass. Shared by both stores' Go side; the Redis script mirrors it.
func quotaCheck(l QuotaLimits, u QuotaUsage, newUpload bool, want int64) (QuotaUsage, error) {
	if newUpload && l.Uploads > 0 && u.Uploads+1 > l.Uploads {
		return u, &QuotaError{Limit: QuotaUploads, Max: l.Uploads, Used: u.Uploads, Want: 1}
	}
	if want > 0 && l.BytesReserved > 0 && u.BytesReserved+want > l.BytesReserved {
		return u, &QuotaError{Limit: QuotaBytesReserved, Max: l.BytesReserved, Used: u.BytesReserved, Want: want}
	}
	if want > 0 && l.BytesStored > 0 && u.BytesStored+u.BytesReserved+want > l.BytesStored {
		return u, &QuotaError{Limit: QuotaBytesStored, Max: l.BytesStored, Used: u.BytesStored + u.BytesReserved, Want: want}
	}
	if newUpload {
		u.Uploads++
	}
	u.BytesReserved += want
	return u, nil
}
