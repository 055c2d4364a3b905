package s3e2e

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestDirectStorageDown: S3 is down when a direct upload's creation has
// claimed its grant, so the multipart upload cannot be created (503). The
// URL is not lost to that: once S3 is back, the client's retried POST (or,
// for a client that resumes with HEAD, its first PATCH) creates the
// storage, and the upload completes to the exact source bytes, on one node
// with local sessions and on two with Redis. The grant still creates one
// upload only.
func TestDirectStorageDown(t *testing.T) {
	redisURL := testsvc.StartRedis(t)
	// Killed and restarted four times: versitygw restarts at once, a
	// SeaweedFS restart takes about 18 s.
	gw := startOwnGateway(t, testsvc.Versitygw)
	redis := []string{"--sessions", "redis", "--redis-url", redisURL}
	for i, tc := range []struct {
		name   string
		args   []string
		resume string
	}{
		{"local-POST", nil, http.MethodPost},
		{"local-PATCH", nil, http.MethodPatch},
		{"redis-POST", redis, http.MethodPost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := []*roughy{startRoughy(t, gw, tc.args...)}
			if tc.args != nil {
				// The retry goes to another node.
				nodes = append(nodes, startRoughy(t, gw, tc.args...))
			}
			ctx := testCtx(t)
			api := newClient(t, nodes[0], acmeKey)
			mint := api.must(ctx, http.MethodPost, nodes[0].URL+"/api/v1/direct-uploads",
				[]byte(`{"type":"video","content_type":"video/mp4","expires_in":600}`), map[string]string{"Content-Type": "application/json"})
			var d struct {
				ID        string `json:"id"`
				UploadURL string `json:"upload_url"`
			}
			if mint.Status != http.StatusCreated || json.Unmarshal(mint.Body, &d) != nil || d.UploadURL == "" {
				t.Fatalf("mint direct upload: %v, want 201 with an upload_url", mint)
			}
			first := newClient(t, nodes[0], "")
			retry := newClient(t, nodes[len(nodes)-1], "")
			retryURL := nodes[len(nodes)-1].URL + d.UploadURL[len(nodes[0].URL):]
			src := randomBytes(t, 12*mib, 30+uint64(i))
			length := map[string]string{"Upload-Length": strconv.Itoa(len(src))}

			gw.Kill()
			checkUnavailable(t, "POST with S3 down", first.must(ctx, http.MethodPost, d.UploadURL, nil, length))
			gw.Restart()

			if tc.resume == http.MethodPost {
				r := retry.must(ctx, http.MethodPost, retryURL, nil, length)
				if r.Status != http.StatusCreated || r.Header.Get("Location") != retryURL {
					t.Fatalf("retried POST: %v Location %q, want 201 and Location = the URL", r, r.Header.Get("Location"))
				}
			} else if st, off := retry.head(ctx, retryURL); st != http.StatusOK || off != 0 {
				t.Fatalf("HEAD after the failed POST: %d offset %d, want 200 and 0", st, off)
			}
			retry.finish(ctx, retryURL, src, 0, 8*mib, 60*time.Second)
			gw.CheckObject(ctx, objectKey(d.ID), src, "video/mp4")
			api.checkReady(ctx, gw, d.ID, src, "video/mp4")
			gw.checkNoMultipartUploads(ctx, "after completion")
			if r := first.must(ctx, http.MethodPost, d.UploadURL, nil, length); r.Status != http.StatusForbidden {
				t.Errorf("POST after completion: %v, want 403 direct_upload_used", r)
			}
		})
	}
}
