package e2e

import (
	"net/http"
	"testing"
	"time"
)

// TestSilentClientLoss (embedded default): a client that stops sending
// mid-PATCH without closing its connection does not hold its upload for
// the 60 s idle timeout: the same client, back on a new connection, HEADs
// and PATCHes (again after a 409, as tus-js-client does when the old
// request committed more while letting go) and is accepted within 1 s.
func TestSilentClientLoss(t *testing.T) {
	s := startServer(t)
	data := randomBytes(24 << 20)
	up := createUpload(t, s, acmeKey, int64(len(data)))
	p := openRawPatch(t, up.Location, acmeKey, 0, int64(len(data)), nil)
	if err := p.WriteSlowly(data[:5<<20], 1<<20, 0); err != nil {
		t.Fatalf("streaming PATCH: %v", err)
	}
	time.Sleep(300 * time.Millisecond) // the server reads what was sent; then silence

	start := time.Now()
	accepted := false
	for try := 0; try < 5 && !accepted; try++ {
		off := headOffset(t, up.Location, acmeKey)
		end := min(off+1<<20, int64(len(data)))
		switch rep := patch(t, up.Location, acmeKey, off, data[off:end]); rep.Status {
		case http.StatusNoContent:
			accepted = true
		case http.StatusConflict:
		default:
			t.Fatalf("resume PATCH at %d: %d %s", off, rep.Status, rep.Body)
		}
	}
	took := time.Since(start)
	if !accepted || took > time.Second {
		t.Fatalf("resume after a silent client loss: accepted %v after %v, want within 1s", accepted, took)
	}
	t.Logf("resume accepted after %v", took)
	off := headOffset(t, up.Location, acmeKey)
	if rep := patch(t, up.Location, acmeKey, off, data[off:]); rep.Status != http.StatusNoContent {
		t.Fatalf("last PATCH: %d %s", rep.Status, rep.Body)
	}
	wantReady(t, s, acmeKey, up.AssetID, data)
}
