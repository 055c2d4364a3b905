package fleet

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFleetQuotaRace: 50 creations at once, spread over three nodes on one
// Redis, where 10 fit the account's quota: exactly 10 are created, every
// other one is refused naming the limit, and a DELETE on one node frees a
// place for a creation on another.
func TestFleetQuotaRace(t *testing.T) {
	quotaRace(t, startFleet(t, 3), "--bytes-reserved", "10000", "bytes_reserved")
}

// TestFleetClusterQuotaRace is TestFleetQuotaRace on a Redis Cluster, where
// an account's quota and its uploads live in different slots; here the
// limit is the count of uploads in progress.
func TestFleetClusterQuotaRace(t *testing.T) {
	quotaRace(t, startClusterFleet(t, 3), "--uploads", "10", "uploads")
}

func quotaRace(t *testing.T, f *fleet, flag, value, limit string) {
	// The CLI talks to Redis itself in fleet mode.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, roughyBin, "quota", "set", "--sessions", "redis", "--redis-url", f.redisURL,
		"--account", "acme", flag, value)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("roughy quota set: %v\n%s", err, out)
	}

	const n = 50
	var mu sync.Mutex
	statuses := map[int]int{}
	var locs []string
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		node := f.nodes[i%len(f.nodes)]
		wg.Go(func() {
			<-start
			a, err := send(t.Context(), "POST", node.URL+tusPath, map[string]string{
				"Upload-Length": "1000", "Upload-Metadata": "type dmlkZW8=",
			}, nil)
			if err != nil {
				t.Errorf("POST %d: %v", i, err)
				return
			}
			if a.Status == http.StatusForbidden {
				wantQuotaError(t, a, limit)
			}
			mu.Lock()
			defer mu.Unlock()
			statuses[a.Status]++
			if a.Status == http.StatusCreated {
				locs = append(locs, a.Header.Get("Location"))
			}
		})
	}
	close(start)
	wg.Wait()
	if statuses[http.StatusCreated] != 10 || statuses[http.StatusForbidden] != n-10 {
		t.Fatalf("%d racing creations over %d nodes, 10 fit: got statuses %v, want 10 × 201 and %d × 403",
			n, len(f.nodes), statuses, n-10)
	}
	for i, node := range f.nodes {
		if u := quotaUsage(t, node); u.Uploads != 10 || u.BytesReserved != 10000 {
			t.Fatalf("usage on node %d: got %+v, want 10 uploads reserving 10000 bytes", i, u)
		}
	}
	// Full: a DELETE on node 0 frees a place that node 2 can give.
	if a := mustSend(t, "POST", f.nodes[2].URL+tusPath, map[string]string{"Upload-Length": "1000", "Upload-Metadata": "type dmlkZW8="}, nil); a.Status != http.StatusForbidden {
		t.Fatalf("POST when full: got %d %s, want 403", a.Status, a.Body)
	}
	if a := mustSend(t, "DELETE", f.nodes[0].at(locs[0]), nil, nil); a.Status != http.StatusNoContent {
		t.Fatalf("DELETE: got %d %s, want 204", a.Status, a.Body)
	}
	create(t, f.nodes[2], 1000)
}

func wantQuotaError(t *testing.T, a answer, limit string) {
	t.Helper()
	var b struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	err := json.Unmarshal(a.Body, &b)
	if err != nil || b.Error.Code != "quota_exceeded" || !strings.Contains(b.Error.Message, `"`+limit+`"`) {
		t.Errorf("403 body: got %s, want quota_exceeded naming %q", a.Body, limit)
	}
}

type usage struct {
	BytesStored   int64 `json:"bytes_stored"`
	Uploads       int64 `json:"uploads"`
	BytesReserved int64 `json:"bytes_reserved"`
}

// quotaUsage is GET /api/v1/quota's usage on node n.
func quotaUsage(t *testing.T, n *node) usage {
	t.Helper()
	a := mustSend(t, "GET", n.URL+"/api/v1/quota", nil, nil)
	var body struct{ Usage usage }
	if a.Status != http.StatusOK || json.Unmarshal(a.Body, &body) != nil {
		t.Fatalf("GET /api/v1/quota on %s: got %d %s", n.URL, a.Status, a.Body)
	}
	return body.Usage
}
