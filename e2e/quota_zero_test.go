package e2e

import (
	"net/http"
	"regexp"
	"testing"
	"time"
)

// TestQuotaZeroFreezes: `roughy quota set --uploads 0 --bytes-stored 0`
// freezes an account (an operator's zero is a limit of zero, not
// "unlimited"), even under generous server defaults; `--uploads
// unlimited` and `quota clear` open it again. The quota API shows the
// zero as 0, unlimited as null.
func TestQuotaZeroFreezes(t *testing.T) {
	s := startServer(t, withArgs("--quota-uploads", "100"))
	quota := func(args ...string) string {
		return runCmd(t, 30*time.Second, nil, roughyBin, append([]string{"quota"}, append(args, "--data-dir", s.DataDir, "--account", "acme")...)...)
	}
	out := quota("set", "--uploads", "0", "--bytes-stored", "0")
	if !regexp.MustCompile(`(?m)^uploads\s+0\s+0$`).MatchString(out) || !regexp.MustCompile(`(?m)^bytes_stored\s+0\s+0$`).MatchString(out) {
		t.Fatalf("quota set --uploads 0 --bytes-stored 0 printed no limits of zero:\n%s", out)
	}
	wantQuotaRefused(t, "creation under an uploads limit of zero", post(t, s, acmeKey, 10), "uploads")
	if q := getQuota(t, s, acmeKey); q.Limits.Uploads == nil || *q.Limits.Uploads != 0 || q.Limits.BytesStored == nil || *q.Limits.BytesStored != 0 {
		t.Fatalf("quota API of the frozen account: %+v, want uploads and bytes_stored 0", q.Limits)
	}
	createUpload(t, s, globexKey, 10) // another account is not frozen

	quota("set", "--uploads", "unlimited")
	wantQuotaRefused(t, "one byte under a bytes_stored limit of zero", post(t, s, acmeKey, 1), "bytes_stored")
	// No bytes: nothing past zero, and it is complete at once.
	if rep := post(t, s, acmeKey, 0); rep.Status != http.StatusCreated {
		t.Fatalf("empty upload under a bytes_stored limit of zero: %d %s, want 201", rep.Status, rep.Body)
	}

	quota("clear")
	if q := getQuota(t, s, acmeKey); q.Limits.BytesStored != nil || q.Limits.Uploads == nil || *q.Limits.Uploads != 100 {
		t.Fatalf("quota API after clear: %+v, want the defaults (100 uploads, bytes_stored unlimited: null)", q.Limits)
	}
	createUpload(t, s, acmeKey, 10)
}
