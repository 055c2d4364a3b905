package sessionstore

import (
	"errors"
	"fmt"
	"time"
)

// Per-account quotas. Three limits, each checked when an
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

// QuotaZero in a QuotaLimits field is a limit of zero: nothing of that
// kind may be reserved (an operator freezing an account). It is not 0
// because stored limits of 0 meant unlimited before there was a zero, and
// records written then must keep their meaning.
const QuotaZero int64 = -2

// Names of the limits, as a QuotaError and the API name them.
const (
	QuotaBytesStored   = "bytes_stored"
	QuotaUploads       = "uploads"
	QuotaBytesReserved = "bytes_reserved"
)

// ErrQuotaExceeded means the reservation would pass one of the account's
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
		if v < 0 && v != QuotaZero {
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

// QuotaCheck applies a reservation of want more bytes (and one more
// upload when newUpload) to u under limits l, or says which limit it
// would pass. Shared by both stores' Go side; the Redis script mirrors it.
func QuotaCheck(l QuotaLimits, u QuotaUsage, newUpload bool, want int64) (QuotaUsage, error) {
	if newUpload && QuotaOver(l.Uploads, u.Uploads+1) {
		return u, &QuotaError{Limit: QuotaUploads, Max: QuotaMax(l.Uploads), Used: u.Uploads, Want: 1}
	}
	if want > 0 && QuotaOver(l.BytesReserved, u.BytesReserved+want) {
		return u, &QuotaError{Limit: QuotaBytesReserved, Max: QuotaMax(l.BytesReserved), Used: u.BytesReserved, Want: want}
	}
	if want > 0 && QuotaOver(l.BytesStored, u.BytesStored+u.BytesReserved+want) {
		return u, &QuotaError{Limit: QuotaBytesStored, Max: QuotaMax(l.BytesStored), Used: u.BytesStored + u.BytesReserved, Want: want}
	}
	if newUpload {
		u.Uploads++
	}
	u.BytesReserved += want
	return u, nil
}

// QuotaOver reports whether total passes limit (a resolved limit: 0 is
// unlimited, QuotaZero a limit of zero).
func QuotaOver(limit, total int64) bool {
	return limit == QuotaZero || limit > 0 && total > limit
}

// QuotaMax is a resolved limit as a number of bytes or uploads: QuotaZero
// is 0; 0 (unlimited) stays 0, and callers tell the two apart first.
func QuotaMax(limit int64) int64 { return max(limit, 0) }
