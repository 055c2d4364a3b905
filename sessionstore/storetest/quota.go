package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// runQuota runs the quota cases. Accounts are random: a Redis
// store shares its data between subtests.
func runQuota(t *testing.T, newStore func(t *testing.T) sessionstore.Store) {
	t.Run("QuotaLimitsRoundTrip", func(t *testing.T) { testQuotaLimits(t, newStore(t)) })
	t.Run("QuotaReserve", func(t *testing.T) { testQuotaReserve(t, newStore(t)) })
	t.Run("QuotaReleaseOnDelete", func(t *testing.T) { testQuotaRelease(t, newStore(t)) })
	t.Run("QuotaConvertOnComplete", func(t *testing.T) { testQuotaSettle(t, newStore(t)) })
	t.Run("QuotaBytesStoredEdge", func(t *testing.T) { testQuotaStoredEdge(t, newStore(t)) })
	t.Run("QuotaDeferredGrowth", func(t *testing.T) { testQuotaGrowth(t, newStore(t)) })
	t.Run("QuotaRaceAtTheEdge", func(t *testing.T) { testQuotaRace(t, newStore(t)) })
	t.Run("QuotaHolds", func(t *testing.T) { testQuotaHolds(t, newStore(t)) })
	t.Run("QuotaZero", func(t *testing.T) { testQuotaZero(t, newStore(t)) })
}

var unlimited = sessionstore.QuotaLimits{}

func wantUsage(t *testing.T, st sessionstore.Store, account, what string, want sessionstore.QuotaUsage) {
	t.Helper()
	_, got, err := st.Quota(t.Context(), account)
	if err != nil {
		t.Fatalf("%s: Quota: %v", what, err)
	}
	if got != want {
		t.Fatalf("%s: usage got %+v, want %+v", what, got, want)
	}
}

// wantRefused checks err is a *QuotaError naming limit.
func wantRefused(t *testing.T, what string, err error, limit string) {
	t.Helper()
	qe, ok := errors.AsType[*sessionstore.QuotaError](err)
	if !ok || !errors.Is(err, sessionstore.ErrQuotaExceeded) {
		t.Fatalf("%s: got %v, want a *QuotaError (%s)", what, err, limit)
	}
	if qe.Limit != limit {
		t.Fatalf("%s: refused by limit %q, want %q (%v)", what, qe.Limit, limit, err)
	}
}

func mustReserve(t *testing.T, st sessionstore.Store, account, id string, n int64, defaults sessionstore.QuotaLimits) {
	t.Helper()
	if err := st.ReserveQuota(t.Context(), account, id, n, defaults); err != nil {
		t.Fatalf("ReserveQuota(%s, %d): %v", id, n, err)
	}
}

func testQuotaLimits(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	acct := newID()
	l, u, err := st.Quota(ctx, acct)
	def := sessionstore.QuotaLimits{BytesStored: sessionstore.QuotaDefault, Uploads: sessionstore.QuotaDefault,
		BytesReserved: sessionstore.QuotaDefault}
	if err != nil || l != def || u != (sessionstore.QuotaUsage{}) {
		t.Fatalf("Quota of a new account: got %+v %+v %v, want %+v, no usage", l, u, err, def)
	}
	set := sessionstore.QuotaLimits{BytesStored: 5 << 30, Uploads: 0, BytesReserved: sessionstore.QuotaDefault}
	if err := st.SetQuota(ctx, acct, set); err != nil {
		t.Fatal(err)
	}
	if l, _, _ = st.Quota(ctx, acct); l != set {
		t.Fatalf("limits after SetQuota: got %+v, want %+v", l, set)
	}
	if got := l.Resolve(sessionstore.QuotaLimits{BytesReserved: 7, Uploads: 9}); got != (sessionstore.QuotaLimits{BytesStored: 5 << 30, BytesReserved: 7}) {
		t.Fatalf("Resolve: got %+v (a set 0 stays unlimited, a default field takes the default)", got)
	}
}

func testQuotaReserve(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	acct := newID()
	if err := st.SetQuota(ctx, acct, sessionstore.QuotaLimits{BytesStored: 1500, Uploads: 2, BytesReserved: 1000}); err != nil {
		t.Fatal(err)
	}
	mustReserve(t, st, acct, "u1", 600, unlimited)
	wantRefused(t, "600 more reserved", st.ReserveQuota(ctx, acct, "u2", 600, unlimited), sessionstore.QuotaBytesReserved)
	wantUsage(t, st, acct, "after a refusal", sessionstore.QuotaUsage{Uploads: 1, BytesReserved: 600})
	mustReserve(t, st, acct, "u2", 400, unlimited)
	wantRefused(t, "a third upload", st.ReserveQuota(ctx, acct, "u3", 0, unlimited), sessionstore.QuotaUploads)
	if err := st.SettleQuota(ctx, acct, "u1", 600); err != nil {
		t.Fatal(err)
	}
	// 600 stored + 400 reserved + 600 > 1500, though reserved would fit.
	err := st.ReserveQuota(ctx, acct, "u3", 600, unlimited)
	wantRefused(t, "past bytes stored", err, sessionstore.QuotaBytesStored)
	if qe, _ := errors.AsType[*sessionstore.QuotaError](err); qe.Max != 1500 || qe.Used != 1000 || qe.Want != 600 {
		t.Fatalf("QuotaError: got %+v, want max 1500 used 1000 want 600", qe)
	}
	mustReserve(t, st, acct, "u3", 500, unlimited)
	wantUsage(t, st, acct, "at the edge", sessionstore.QuotaUsage{BytesStored: 600, Uploads: 2, BytesReserved: 900})

	// An account without limits of its own takes the defaults given.
	other := newID()
	defaults := sessionstore.QuotaLimits{Uploads: 1}
	mustReserve(t, st, other, "a", 1<<40, defaults)
	wantRefused(t, "default uploads", st.ReserveQuota(ctx, other, "b", 1, defaults), sessionstore.QuotaUploads)
	// Its own limit wins over the default.
	if err := st.SetQuota(ctx, other, sessionstore.QuotaLimits{Uploads: 2, BytesStored: -1, BytesReserved: -1}); err != nil {
		t.Fatal(err)
	}
	mustReserve(t, st, other, "b", 1, defaults)
}

func testQuotaRelease(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	acct := newID()
	mustReserve(t, st, acct, "u1", 700, unlimited)
	mustReserve(t, st, acct, "u2", 300, unlimited)
	if err := st.ReleaseQuota(ctx, acct, "u1"); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, st, acct, "released", sessionstore.QuotaUsage{Uploads: 1, BytesReserved: 300})
	if err := st.ReleaseQuota(ctx, acct, "u1"); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, st, acct, "released twice", sessionstore.QuotaUsage{Uploads: 1, BytesReserved: 300})
	// Another account's release of the same id changes nothing here.
	if err := st.ReleaseQuota(ctx, newID(), "u2"); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, st, acct, "another account's release", sessionstore.QuotaUsage{Uploads: 1, BytesReserved: 300})
	// A completed upload's release frees its stored bytes.
	if err := st.SettleQuota(ctx, acct, "u2", 300); err != nil {
		t.Fatal(err)
	}
	if err := st.ReleaseQuota(ctx, acct, "u2"); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, st, acct, "completed, then deleted", sessionstore.QuotaUsage{})
}

func testQuotaSettle(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	acct := newID()
	mustReserve(t, st, acct, "u1", 500, unlimited)
	if err := st.SettleQuota(ctx, acct, "u1", 500); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, st, acct, "settled", sessionstore.QuotaUsage{BytesStored: 500})
	if err := st.SettleQuota(ctx, acct, "u1", 500); err != nil {
		t.Fatal(err)
	}
	mustReserve(t, st, acct, "u1", 900, unlimited)
	wantUsage(t, st, acct, "settled twice, reserved after", sessionstore.QuotaUsage{BytesStored: 500})
	// A deferred upload settles at its final size, below what it held.
	mustReserve(t, st, acct, "u2", 800, unlimited)
	if err := st.SettleQuota(ctx, acct, "u2", 650); err != nil {
		t.Fatal(err)
	}
	wantUsage(t, st, acct, "deferred settled", sessionstore.QuotaUsage{BytesStored: 1150})
}

// testQuotaStoredEdge: bytes_stored (completed plus reserved) takes an
// account exactly to its limit and not one byte past it, whether the byte
// comes with a new upload or grows one in progress.
func testQuotaStoredEdge(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	acct := newID()
	if err := st.SetQuota(ctx, acct, sessionstore.QuotaLimits{BytesStored: 1000, Uploads: -1, BytesReserved: -1}); err != nil {
		t.Fatal(err)
	}
	mustReserve(t, st, acct, "done", 600, unlimited)
	if err := st.SettleQuota(ctx, acct, "done", 600); err != nil {
		t.Fatal(err)
	}
	mustReserve(t, st, acct, "u1", 300, unlimited)
	err := st.ReserveQuota(ctx, acct, "u2", 101, unlimited)
	wantRefused(t, "a new upload one byte past bytes_stored", err, sessionstore.QuotaBytesStored)
	if qe, _ := errors.AsType[*sessionstore.QuotaError](err); qe.Max != 1000 || qe.Used != 900 || qe.Want != 101 {
		t.Fatalf("QuotaError: got %+v, want max 1000 used 900 want 101", qe)
	}
	wantUsage(t, st, acct, "refused one byte past", sessionstore.QuotaUsage{BytesStored: 600, Uploads: 1, BytesReserved: 300})
	mustReserve(t, st, acct, "u2", 100, unlimited)
	wantUsage(t, st, acct, "exactly at bytes_stored", sessionstore.QuotaUsage{BytesStored: 600, Uploads: 2, BytesReserved: 400})
	wantRefused(t, "growing one byte past bytes_stored", st.ReserveQuota(ctx, acct, "u1", 301, unlimited), sessionstore.QuotaBytesStored)
	wantUsage(t, st, acct, "refused growth", sessionstore.QuotaUsage{BytesStored: 600, Uploads: 2, BytesReserved: 400})
}

func testQuotaGrowth(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	acct := newID()
	if err := st.SetQuota(ctx, acct, sessionstore.QuotaLimits{BytesStored: -1, Uploads: -1, BytesReserved: 1000}); err != nil {
		t.Fatal(err)
	}
	mustReserve(t, st, acct, "d", 0, unlimited)
	wantUsage(t, st, acct, "deferred creation", sessionstore.QuotaUsage{Uploads: 1})
	mustReserve(t, st, acct, "d", 400, unlimited)
	mustReserve(t, st, acct, "d", 300, unlimited)
	wantUsage(t, st, acct, "grown, never shrunk", sessionstore.QuotaUsage{Uploads: 1, BytesReserved: 400})
	wantRefused(t, "grown past", st.ReserveQuota(ctx, acct, "d", 1001, unlimited), sessionstore.QuotaBytesReserved)
	wantUsage(t, st, acct, "refused growth", sessionstore.QuotaUsage{Uploads: 1, BytesReserved: 400})
	mustReserve(t, st, acct, "d", 1000, unlimited)
	wantUsage(t, st, acct, "grown to the edge", sessionstore.QuotaUsage{Uploads: 1, BytesReserved: 1000})
}

// testQuotaRace: 50 reservations at once where 10 fit: exactly 10 pass,
// on either limit.
func testQuotaRace(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	const n, fit, size = 50, 10, 1 << 20
	acct := newID()
	if err := st.SetQuota(ctx, acct, sessionstore.QuotaLimits{BytesStored: -1, Uploads: -1, BytesReserved: fit * size}); err != nil {
		t.Fatal(err)
	}
	ok, refused := race(t, n, sessionstore.ErrQuotaExceeded, func(int) error {
		return st.ReserveQuota(ctx, acct, newID(), size, unlimited)
	})
	if ok != fit || refused != n-fit {
		t.Fatalf("bytes_reserved race: got %d reserved and %d refused, want %d and %d", ok, refused, fit, n-fit)
	}
	wantUsage(t, st, acct, "after the race", sessionstore.QuotaUsage{Uploads: fit, BytesReserved: fit * size})

	acct = newID()
	defaults := sessionstore.QuotaLimits{Uploads: 7}
	ok, refused = race(t, n, sessionstore.ErrQuotaExceeded, func(int) error {
		return st.ReserveQuota(ctx, acct, newID(), size, defaults)
	})
	if ok != 7 || refused != n-7 {
		t.Fatalf("uploads race: got %d reserved and %d refused, want 7 and %d", ok, refused, n-7)
	}
}

func testQuotaHolds(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	acct := newID()
	mustReserve(t, st, acct, "u1", 10, unlimited)
	listedID := func(id string, before time.Time) bool {
		t.Helper()
		hs, err := st.QuotaHolds(ctx, before, 100000)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hs {
			if h.Account == acct && h.UploadID == id {
				return true
			}
		}
		return false
	}
	listed := func(before time.Time) bool { t.Helper(); return listedID("u1", before) }
	if !listed(time.Now().Add(time.Second)) {
		t.Fatal("a hold is not listed by QuotaHolds after it was made")
	}
	if listed(time.Now().Add(-time.Minute)) {
		t.Fatal("a new hold is listed as older than a minute")
	}
	// A refused creation leaves nothing to repair.
	if err := st.SetQuota(ctx, acct, sessionstore.QuotaLimits{Uploads: 1, BytesStored: -1, BytesReserved: -1}); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, "second upload", st.ReserveQuota(ctx, acct, "refused", 1, unlimited), sessionstore.QuotaUploads)
	if listedID("refused", time.Now().Add(time.Second)) {
		t.Fatal("a refused creation is listed as a hold")
	}
	time.Sleep(20 * time.Millisecond)
	mark := time.Now()
	time.Sleep(20 * time.Millisecond)
	if err := st.TouchQuota(ctx, acct, "u1"); err != nil {
		t.Fatal(err)
	}
	if listed(mark) {
		t.Fatal("a touched hold is still listed as older than the touch")
	}
	if err := st.SettleQuota(ctx, acct, "u1", 10); err != nil {
		t.Fatal(err)
	}
	if listed(time.Now().Add(time.Second)) {
		t.Fatal("a settled hold is still listed")
	}
	if err := st.TouchQuota(ctx, acct, "u1"); err != nil {
		t.Fatal(err)
	}
	if listed(time.Now().Add(time.Second)) {
		t.Fatal("touching a settled upload made it a hold again")
	}
}

// testQuotaZero: a limit of zero (QuotaZero) refuses everything of its
// kind, however generous the defaults, and reads back as set; a stored 0
// stays unlimited.
func testQuotaZero(t *testing.T, st sessionstore.Store) {
	ctx := t.Context()
	defaults := sessionstore.QuotaLimits{BytesStored: 1 << 30, Uploads: 100, BytesReserved: 1 << 30}
	frozen := newID()
	zero := sessionstore.QuotaLimits{BytesStored: sessionstore.QuotaDefault, Uploads: sessionstore.QuotaZero, BytesReserved: sessionstore.QuotaDefault}
	if err := st.SetQuota(ctx, frozen, zero); err != nil {
		t.Fatal(err)
	}
	if l, _, err := st.Quota(ctx, frozen); err != nil || l != zero {
		t.Fatalf("limits after SetQuota with a zero: got %+v %v, want %+v", l, err, zero)
	}
	err := st.ReserveQuota(ctx, frozen, "u1", 0, defaults)
	wantRefused(t, "an upload under an uploads limit of zero", err, sessionstore.QuotaUploads)
	if qe, _ := errors.AsType[*sessionstore.QuotaError](err); qe.Max != 0 {
		t.Fatalf("QuotaError of a zero limit: max %d, want 0", qe.Max)
	}

	bytesZero := newID()
	if err := st.SetQuota(ctx, bytesZero, sessionstore.QuotaLimits{BytesStored: sessionstore.QuotaZero,
		Uploads: sessionstore.QuotaDefault, BytesReserved: sessionstore.QuotaDefault}); err != nil {
		t.Fatal(err)
	}
	mustReserve(t, st, bytesZero, "empty", 0, defaults) // no bytes: nothing past zero
	wantRefused(t, "one byte under a bytes_stored limit of zero",
		st.ReserveQuota(ctx, bytesZero, "one", 1, defaults), sessionstore.QuotaBytesStored)
	wantUsage(t, st, bytesZero, "after the refusal", sessionstore.QuotaUsage{Uploads: 1})

	open := newID()
	if err := st.SetQuota(ctx, open, sessionstore.QuotaLimits{Uploads: 0, BytesStored: 0, BytesReserved: 0}); err != nil {
		t.Fatal(err)
	}
	mustReserve(t, st, open, "big", 1<<40, sessionstore.QuotaLimits{Uploads: 1, BytesStored: 1})
	mustReserve(t, st, open, "more", 1, sessionstore.QuotaLimits{Uploads: 1, BytesStored: 1})
}
