package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/sessionstore"

	"github.com/roughy/ingest/sessionstore/redis"
)

// roundRobin is a load balancer without stickiness: request n goes to
// node n mod len(nodes). Host and X-Forwarded-* name the balancer, so
// Location URLs point back at it.
func roundRobin(nodes []string, hits []atomic.Int64) http.Handler {
	var n atomic.Int64
	return &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		i := int(n.Add(1)-1) % len(nodes)
		hits[i].Add(1)
		u, _ := url.Parse("http://" + nodes[i])
		pr.SetURL(u)
		pr.Out.Host = pr.In.Host
		pr.SetXForwarded()
	}}
}

// TestFleet runs the binary in fleet mode against real Redis and S3
// (versitygw): two serve nodes behind a round-robin balancer take turns
// on every request of each upload, and a separate probe-worker process
// probes through presigned URLs.
func TestFleet(t *testing.T) {
	media := makeMP4(t)
	redisURL := testsvc.StartRedis(t)
	s3 := testsvc.StartS3(t)
	const key = "rk_live_fleettestkey00000000000000"
	tmp := t.TempDir()
	unused := []string{filepath.Join(tmp, "unused"), filepath.Join(tmp, "a"), filepath.Join(tmp, "b")}
	env := []string{
		"ROUGHY_SESSIONS=redis", "ROUGHY_REDIS_URL=" + redisURL,
		"ROUGHY_STORAGE=s3", "ROUGHY_S3_BUCKET=" + s3.Bucket, "ROUGHY_S3_ENDPOINT=" + s3.Endpoint,
		"ROUGHY_S3_REGION=" + s3.Region, "ROUGHY_S3_FORCE_PATH_STYLE=true",
		"AWS_ACCESS_KEY_ID=" + s3.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s3.SecretKey, "AWS_REGION=" + s3.Region,
		"ROUGHY_API_KEYS=acme=" + key, "ROUGHY_MAX_BUFFER_MEMORY=64MiB", "ROUGHY_PROBE_WORKERS=0",
		"ROUGHY_KEY_CACHE_TTL=0", // revocation takes effect at once
		"ROUGHY_DATA_DIR=" + unused[0],
	}
	a := startServe(t, unused[1], env)
	b := startServe(t, unused[2], env)
	pw := startRoughy(t, env, "roughy probe-worker running", "probe-worker", "--probe-workers", "1")
	for _, s := range []*server{a, b} {
		if strings.Contains(s.stdout.String(), "dev API key") {
			t.Fatal("fleet node created a dev key")
		}
	}
	for _, d := range unused {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("fleet mode created data dir %s", d)
		}
	}

	hits := make([]atomic.Int64, 2)
	lb := httptest.NewServer(roundRobin([]string{a.addr, b.addr}, hits))
	defer lb.Close()
	endpoint := lb.URL + "/api/v1/assets/upload-resumable"
	opts := testOptions(t, endpoint)
	opts.Key = key

	text := filepath.Join(t.TempDir(), "readme.txt")
	if err := os.WriteFile(text, []byte("release notes, not a film\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	textOpts := opts
	textOpts.Type = "video"
	textRes, err := runUpload(t.Context(), textOpts, text, io.Discard)
	if err != nil {
		t.Fatal(err)
	}

	opts.ChunkSize = 8 << 10
	mediaRes, err := runUpload(t.Context(), opts, media, io.Discard)
	if err != nil {
		t.Fatal(err)
	}

	big, bigData := randomFile(t, 12<<20+5)
	opts.ChunkSize = 6 << 20
	bigRes, err := runUpload(t.Context(), opts, big, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var bigAsset struct {
		State       string `json:"state"`
		SHA256      string `json:"sha256"`
		DownloadURL string `json:"download_url"`
	}
	if err := json.Unmarshal(bigRes.Asset, &bigAsset); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bigData)
	if bigAsset.State != "ready" || bigAsset.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("big asset %s", bigRes.Asset)
	}
	resp, err := http.Get(bigAsset.DownloadURL)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	_, err = io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || hex.EncodeToString(h.Sum(nil)) != bigAsset.SHA256 {
		t.Fatalf("download_url: HTTP %d, sha256 %x, want %s", resp.StatusCode, h.Sum(nil), bigAsset.SHA256)
	}
	lbServer := &server{addr: strings.TrimPrefix(lb.URL, "http://")}
	wantDownload(t, lbServer, key, bigRes.AssetID, bigData)
	wantDownload(t, lbServer, key, mediaRes.AssetID, readFile(t, media))
	wantDownload(t, lbServer, key, textRes.AssetID, readFile(t, text))
	if hits[0].Load() < 3 || hits[1].Load() < 3 {
		t.Errorf("requests per node %d/%d: both nodes should serve", hits[0].Load(), hits[1].Load())
	}

	deadline := time.Now().Add(45 * time.Second)
	var got assetJSON
	for {
		got = getAsset(t, lbServer, key, mediaRes.AssetID)
		if got.DurationSeconds != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got.DurationSeconds == nil || !regexp.MustCompile(`^(1\.9\d\d|2\.0\d\d)$`).MatchString(*got.DurationSeconds) {
		t.Fatalf("media asset after 45s: %+v (probe-worker log:\n%s)", got, pw.stderr.String())
	}

	st, err := redis.New(context.WithoutCancel(t.Context()), redisURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var dead []sessionstore.DeadProbe
	for range 50 {
		if dead, err = st.DeadProbes(t.Context()); err != nil {
			t.Fatal(err)
		}
		if len(dead) > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !slices.ContainsFunc(dead, func(d sessionstore.DeadProbe) bool {
		return d.AssetID == textRes.AssetID && strings.Contains(d.Reason, "Invalid data")
	}) {
		t.Fatalf("dead list %+v, want the text file", dead)
	}
	if g := getAsset(t, lbServer, key, textRes.AssetID); g.DurationSeconds != nil {
		t.Fatalf("non-media duration %q", *g.DurationSeconds)
	}
	// Keys are managed live on the shared store: a key created now works
	// on every node at once, a revoked one on none.
	secret, err := roughyCmd(t, env, "keys", "create", "--account", "globex")
	if err != nil {
		t.Fatal(err)
	}
	secret = strings.TrimSpace(secret)
	list, err := roughyCmd(t, env, "keys", "list")
	if err != nil || !strings.Contains(list, "globex") || !strings.Contains(list, "acme") {
		t.Fatalf("keys list: %v\n%s", err, list)
	}
	small, smallData := randomFile(t, 2000)
	globex := testOptions(t, endpoint)
	globex.Key = secret
	smallRes, err := runUpload(t.Context(), globex, small, io.Discard)
	if err != nil {
		t.Fatalf("upload with a key created live: %v", err)
	}
	wantDownload(t, lbServer, secret, smallRes.AssetID, smallData)
	if _, err := roughyCmd(t, env, "keys", "revoke", apikey.Record("globex", secret).ID); err != nil {
		t.Fatal(err)
	}
	globex.StateFile = filepath.Join(t.TempDir(), "s.json")
	if _, err := runUpload(t.Context(), globex, small, io.Discard); err == nil {
		t.Fatal("revoked key still uploads")
	}
	for _, s := range []*server{a, b, pw} {
		s.stop(t)
	}
}
