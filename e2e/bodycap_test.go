package e2e

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestAccountBodyCapRetried: an account at its --max-patches-per-account
// cap gets 503 with Retry-After, a status every TUS client retries, so
// tus-js-client with its default retry delays (0, 1, 3, 5 s) finishes an
// upload that met the cap once the other body ended. A 429 here failed
// the upload at once: tus-js-client retries no 4xx but 409 and 423.
func TestAccountBodyCapRetried(t *testing.T) {
	requireNodeModules(t)
	s := startServer(t, withArgs("--max-patches-per-account", "1"))
	held := createUpload(t, s, acmeKey, 1<<20)
	c := testsvc.DialDraft(t, held.Location)
	c.Start("PATCH", held.Location, testsvc.Hdr{{"Authorization", "Bearer " + acmeKey}, {"Tus-Resumable", "1.0.0"},
		{"Upload-Offset", "0"}, {"Content-Type", "application/offset+octet-stream"}, {"Content-Length", fmt.Sprint(1 << 20)}})
	c.Body(make([]byte, 64<<10))
	// The held body counts against the cap once the server streams it:
	// a creation of the other upload can otherwise overtake it.
	waitMetric(t, s, "roughy_active_uploads", func(v int64) bool { return v >= 1 })

	other := createUpload(t, s, acmeKey, 10)
	rep := patch(t, other.Location, acmeKey, 0, []byte("0123456789"))
	if rep.Status != http.StatusServiceUnavailable || !strings.Contains(string(rep.Body), `"too_many_uploads"`) || rep.Header.Get("Retry-After") == "" {
		t.Fatalf("PATCH while the account streams its cap: %d %s Retry-After %q, want 503 too_many_uploads with Retry-After",
			rep.Status, rep.Body, rep.Header.Get("Retry-After"))
	}

	// The held body ends once tus-js-client met the cap too (a second
	// too_many_uploads answer on /metrics): its next retry, a second
	// later, finds the slot free. Waiting on the answer rather than a
	// clock keeps the test meaningful however slowly node starts.
	released := make(chan struct{})
	go func() {
		defer close(released)
		defer c.Conn.Close()
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if capRefusals(s.URL) >= 2 {
				return
			}
		}
	}()
	data := randomBytes(3<<20 + 5)
	f := runTusJS(t, s, "plain", writeTemp(t, "capped.bin", data))
	<-released
	refused := 0
	for _, r := range f.Requests {
		if strings.HasPrefix(r, "PATCH 503") {
			refused++
		}
	}
	if refused == 0 {
		t.Errorf("tus-js-client saw no 503 (requests %v): the cap was not met, the test proves nothing", f.Requests)
	}
	wantReady(t, s, acmeKey, f.AssetID, data)
}

var capRefusalsRE = regexp.MustCompile(`(?m)^roughy_http_errors_total\{[^}]*code="too_many_uploads"[^}]*\} (\d+)`)

// capRefusals is how many too_many_uploads answers the server's /metrics
// counts (0 when it cannot be read).
func capRefusals(base string) int {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n := 0
	for _, m := range capRefusalsRE.FindAllSubmatch(b, -1) {
		v, _ := strconv.Atoi(string(m[1]))
		n += v
	}
	return n
}
