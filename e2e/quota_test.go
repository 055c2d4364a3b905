package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// quotaJSON is GET /api/v1/quota's body.
type quotaJSON struct {
	Account string
	Limits  struct {
		BytesStored   *int64 `json:"bytes_stored"`
		Uploads       *int64 `json:"uploads"`
		BytesReserved *int64 `json:"bytes_reserved"`
	}
	Usage struct {
		BytesStored   int64 `json:"bytes_stored"`
		Uploads       int64 `json:"uploads"`
		BytesReserved int64 `json:"bytes_reserved"`
	}
}

func getQuota(t *testing.T, s *server, key string) quotaJSON {
	t.Helper()
	rep := do(t, req{Method: "GET", URL: s.URL + "/api/v1/quota", Key: key, NoTus: true})
	var q quotaJSON
	if rep.Status != http.StatusOK {
		t.Fatalf("GET /api/v1/quota: got %d %s, want 200", rep.Status, rep.Body)
	}
	if err := json.Unmarshal(rep.Body, &q); err != nil {
		t.Fatalf("GET /api/v1/quota body %q: %v", rep.Body, err)
	}
	return q
}

// wantUsage checks the account's usage as GET /api/v1/quota shows it.
func wantUsage(t *testing.T, s *server, key, what string, stored, uploads, reserved int64) {
	t.Helper()
	u := getQuota(t, s, key).Usage
	if u.BytesStored != stored || u.Uploads != uploads || u.BytesReserved != reserved {
		t.Fatalf("%s: usage got stored %d, uploads %d, reserved %d; want %d, %d, %d",
			what, u.BytesStored, u.Uploads, u.BytesReserved, stored, uploads, reserved)
	}
}

// wantQuotaRefused checks a 403 quota_exceeded whose message names limit.
func wantQuotaRefused(t *testing.T, what string, rep reply, limit string) {
	t.Helper()
	var b struct {
		Error struct{ Code, Message string }
	}
	err := json.Unmarshal(rep.Body, &b)
	if err != nil || rep.Status != http.StatusForbidden || b.Error.Code != "quota_exceeded" || !strings.Contains(b.Error.Message, `"`+limit+`"`) {
		t.Fatalf("%s: got %d %s, want 403 quota_exceeded naming %q", what, rep.Status, rep.Body, limit)
	}
}

// post creates an upload of length bytes (-1: deferred) and returns the
// raw reply.
func post(t *testing.T, s *server, key string, length int64) reply {
	t.Helper()
	h := map[string]string{"Upload-Metadata": videoMeta("q.bin"), "Upload-Length": fmt.Sprint(length)}
	if length < 0 {
		delete(h, "Upload-Length")
		h["Upload-Defer-Length"] = "1"
	}
	return do(t, req{Method: "POST", URL: s.Endpoint(), Key: key, Header: h})
}

func deleteUpload(t *testing.T, loc, key string) {
	t.Helper()
	if rep := do(t, req{Method: "DELETE", URL: loc, Key: key}); rep.Status != http.StatusNoContent {
		t.Fatalf("DELETE: got %d %s, want 204", rep.Status, rep.Body)
	}
}

// TestQuotaUploadsInProgress: `roughy quota set`, through the running
// server's admin socket, caps acme's uploads in progress; the creation
// past it is refused naming the limit, another account is not affected,
// and a DELETE frees a place.
func TestQuotaUploadsInProgress(t *testing.T) {
	s := startServer(t)
	out := runCmd(t, 30*time.Second, nil, roughyBin, "quota", "set", "--data-dir", s.DataDir, "--account", "acme", "--uploads", "2")
	if !regexp.MustCompile(`(?m)^uploads\s+0\s+2$`).MatchString(out) {
		t.Fatalf("roughy quota set printed no \"uploads 0 2\" row:\n%s", out)
	}
	first := createUpload(t, s, acmeKey, 10)
	createUpload(t, s, acmeKey, 10)
	wantQuotaRefused(t, "third upload", post(t, s, acmeKey, 10), "uploads")
	createUpload(t, s, globexKey, 10)
	out = runCmd(t, 30*time.Second, nil, roughyBin, "quota", "show", "--data-dir", s.DataDir, "--account", "acme")
	if !regexp.MustCompile(`(?m)^uploads\s+2\s+2$`).MatchString(out) || !regexp.MustCompile(`(?m)^bytes_reserved\s+20\s+default$`).MatchString(out) {
		t.Fatalf("roughy quota show: want uploads 2 of 2 and 20 bytes reserved:\n%s", out)
	}
	deleteUpload(t, first.Location, acmeKey)
	wantUsage(t, s, acmeKey, "after DELETE", 0, 1, 10)
	createUpload(t, s, acmeKey, 10)
}

// TestQuotaBytes: default quotas from serve's flags. A creation past
// bytes_reserved or bytes_stored is refused naming the limit; completion
// turns the reservation into stored bytes, and DELETE of the completed
// upload frees them.
func TestQuotaBytes(t *testing.T) {
	s := startServer(t, withArgs("--quota-bytes-reserved", "1000", "--quota-bytes-stored", "1500"))
	q := getQuota(t, s, acmeKey)
	if q.Account != "acme" || q.Limits.BytesReserved == nil || *q.Limits.BytesReserved != 1000 ||
		q.Limits.BytesStored == nil || *q.Limits.BytesStored != 1500 || q.Limits.Uploads != nil {
		t.Fatalf("GET /api/v1/quota: got %+v, want the flags' limits, uploads unlimited (null)", q)
	}
	wantQuotaRefused(t, "creation over bytes_reserved", post(t, s, acmeKey, 1001), "bytes_reserved")
	up := createUpload(t, s, acmeKey, 600)
	wantQuotaRefused(t, "second 600", post(t, s, acmeKey, 600), "bytes_reserved")
	data := randomBytes(600)
	if rep := patch(t, up.Location, acmeKey, 0, data); rep.Status != http.StatusNoContent {
		t.Fatalf("PATCH: got %d %s", rep.Status, rep.Body)
	}
	wantReady(t, s, acmeKey, up.AssetID, data)
	wantUsage(t, s, acmeKey, "after completion", 600, 0, 0)
	// 600 stored + 1000 > 1500, though 1000 fits bytes_reserved.
	wantQuotaRefused(t, "creation over bytes_stored", post(t, s, acmeKey, 1000), "bytes_stored")
	deleteUpload(t, up.Location, acmeKey)
	wantUsage(t, s, acmeKey, "after DELETE of the completed upload", 0, 0, 0)
	createUpload(t, s, acmeKey, 1000)
}

// TestQuotaDeferredLength: an upload without a length reserves as it
// grows; a PATCH that would take it past the quota, by its body or by the
// Upload-Length it sets, is refused before its bytes are stored.
func TestQuotaDeferredLength(t *testing.T) {
	s := startServer(t, withArgs("--quota-bytes-reserved", "1000"))
	up := createUpload(t, s, acmeKey, -1)
	wantUsage(t, s, acmeKey, "deferred creation", 0, 1, 0)
	data := randomBytes(1000)
	if rep := patch(t, up.Location, acmeKey, 0, data[:600]); rep.Status != http.StatusNoContent {
		t.Fatalf("PATCH 600: got %d %s", rep.Status, rep.Body)
	}
	wantUsage(t, s, acmeKey, "grown to 600", 0, 1, 600)
	wantQuotaRefused(t, "PATCH past the quota", patch(t, up.Location, acmeKey, 600, randomBytes(600)), "bytes_reserved")
	rep := do(t, req{Method: "PATCH", URL: up.Location, Key: acmeKey, Body: strings.NewReader(""), Header: map[string]string{
		"Upload-Offset": "600", "Upload-Length": "2000", "Content-Type": "application/offset+octet-stream"}})
	wantQuotaRefused(t, "Upload-Length past the quota", rep, "bytes_reserved")
	if got := headOffset(t, up.Location, acmeKey); got != 600 {
		t.Fatalf("offset after the refusals: got %d, want 600", got)
	}
	rep = do(t, req{Method: "PATCH", URL: up.Location, Key: acmeKey, Body: strings.NewReader(string(data[600:])), Header: map[string]string{
		"Upload-Offset": "600", "Upload-Length": "1000", "Content-Type": "application/offset+octet-stream"}})
	if rep.Status != http.StatusNoContent {
		t.Fatalf("last PATCH with Upload-Length 1000: got %d %s", rep.Status, rep.Body)
	}
	wantReady(t, s, acmeKey, up.AssetID, data)
	wantUsage(t, s, acmeKey, "completed", 1000, 0, 0)
}

// TestQuotaExpiryFrees: the janitor's expiry of an abandoned upload frees
// its place.
func TestQuotaExpiryFrees(t *testing.T) {
	s := startServer(t, withArgs("--quota-uploads", "1", "--upload-expiry", "1s", "--janitor-interval", "200ms"))
	createUpload(t, s, acmeKey, 100)
	wantQuotaRefused(t, "second upload", post(t, s, acmeKey, 100), "uploads")
	deadline := time.Now().Add(15 * time.Second)
	for getQuota(t, s, acmeKey).Usage.Uploads != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the expired upload still counts 15 s later: %+v", getQuota(t, s, acmeKey).Usage)
		}
		time.Sleep(100 * time.Millisecond)
	}
	wantUsage(t, s, acmeKey, "after expiry", 0, 0, 0)
	createUpload(t, s, acmeKey, 100)
}

// TestQuotaRaceAtTheEdge: 50 creations at once where 10 fit: exactly 10
// are created.
func TestQuotaRaceAtTheEdge(t *testing.T) {
	s := startServer(t, withArgs("--quota-bytes-reserved", "10000"))
	counts := raceCreations(t, 50, func(int) (int, error) {
		rep, err := tryDo(t.Context(), req{Method: "POST", URL: s.Endpoint(), Key: acmeKey,
			Header: map[string]string{"Upload-Metadata": videoMeta("r.bin"), "Upload-Length": "1000"}})
		return rep.Status, err
	})
	if counts[http.StatusCreated] != 10 || counts[http.StatusForbidden] != 40 {
		t.Fatalf("50 racing creations, 10 fit: got statuses %v, want 10 × 201 and 40 × 403", counts)
	}
	wantUsage(t, s, acmeKey, "after the race", 0, 10, 10000)
}

// raceCreations runs fn(0..n-1) at once and counts the statuses.
func raceCreations(t *testing.T, n int, fn func(i int) (int, error)) map[int]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[int]int{}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			status, err := fn(i)
			if err != nil {
				t.Errorf("creation %d: %v", i, err)
				return
			}
			mu.Lock()
			counts[status]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return counts
}

// quotaShow runs `roughy quota show` for account (through the running
// server's admin socket) and returns its USED column: bytes stored,
// uploads, bytes reserved.
func quotaShow(t *testing.T, s *server, account string) [3]int64 {
	t.Helper()
	out := runCmd(t, 30*time.Second, nil, roughyBin, "quota", "show", "--data-dir", s.DataDir, "--account", account)
	var used [3]int64
	for i, name := range []string{"bytes_stored", "uploads", "bytes_reserved"} {
		m := regexp.MustCompile(`(?m)^` + name + `\s+(\d+)\s`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("roughy quota show: no %s row:\n%s", name, out)
		}
		if _, err := fmt.Sscan(m[1], &used[i]); err != nil {
			t.Fatalf("roughy quota show: %s %q: %v", name, m[1], err)
		}
	}
	return used
}

// TestQuotaIETFDeferredLength: over the IETF draft, an upload created
// without a length (?0) reserves its length when an append makes it known
// (?1 with Content-Length): 3 MiB under a bytes_stored of 1 MiB is refused
// naming the limit, before any byte is stored, and leaves the account's
// usage as it was; 1 MiB, exactly the limit, completes and downloads
// equal.
func TestQuotaIETFDeferredLength(t *testing.T) {
	s := startServer(t)
	runCmd(t, 30*time.Second, nil, roughyBin, "quota", "set", "--data-dir", s.DataDir, "--account", "acme", "--bytes-stored", "1048576")
	ep := s.Endpoint()
	_, r := draftRoundTrip(t, "POST", ep, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?0"}, {"Content-Type", "video/mp4"}}, []byte{})
	loc := r.Header.Get("Location")
	if r.Status != http.StatusCreated || loc == "" {
		t.Fatalf("draft creation: got %d %s, want 201 with Location", r.Status, r.Body)
	}
	if got, want := quotaShow(t, s, "acme"), [3]int64{0, 1, 0}; got != want {
		t.Fatalf("roughy quota show after the creation: stored, uploads, reserved %v, want %v", got, want)
	}
	app := func(data []byte) testsvc.DraftReply {
		_, r := draftRoundTrip(t, "PATCH", loc, hdr{auth(acmeKey), interop(8), {"Upload-Complete", "?1"},
			{"Upload-Offset", "0"}, {"Content-Type", "application/partial-upload"}}, data)
		return r
	}
	r = app(randomBytes(3 << 20))
	var p struct{ Code, Detail string }
	err := json.Unmarshal(r.Body, &p)
	if err != nil || r.Status != http.StatusForbidden || p.Code != "quota_exceeded" || !strings.Contains(p.Detail, `"bytes_stored"`) {
		t.Fatalf("append of 3 MiB: got %d %s, want 403 quota_exceeded naming \"bytes_stored\"", r.Status, r.Body)
	}
	if got, want := quotaShow(t, s, "acme"), [3]int64{0, 1, 0}; got != want {
		t.Fatalf("roughy quota show after the refusal: stored, uploads, reserved %v, want %v", got, want)
	}
	_, h := draftRoundTrip(t, "HEAD", loc, hdr{auth(acmeKey), interop(8)}, nil)
	wantHeader(t, "HEAD after the refusal", h, "Upload-Offset", "0")
	wantHeader(t, "HEAD after the refusal", h, "Upload-Length", "")

	data := randomBytes(1 << 20)
	a := wantAssetReply(t, "append of 1 MiB", app(data), data)
	wantReady(t, s, acmeKey, a.ID, data)
	if got, want := quotaShow(t, s, "acme"), [3]int64{1 << 20, 0, 0}; got != want {
		t.Fatalf("roughy quota show after completion: stored, uploads, reserved %v, want %v", got, want)
	}
}
