// Package fleet tests fleet mode end to end: several `roughy serve
// --sessions redis --storage s3` processes on loopback ports share one real
// redis-server and one real versitygw, and the requests of one upload go to
// different nodes.
package fleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"

	"github.com/roughy/ingest/sessionstore/redis"
)

const (
	fleetKey  = "rk_live_fleetkeyfleetkeyfleetkeyfleet0001"
	fleetKeys = "acme=" + fleetKey
	tusPath   = "/api/v1/assets/upload-resumable"
	// leaseTTL is short so that a killed node's uploads are taken over
	// within tus-js-client's retry schedule (0, 3, 5, 10, 20 s).
	leaseTTL = "3s"
)

// roughyBin is the binary TestMain built.
var roughyBin string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if bin := os.Getenv(fleetBinEnv); bin != "" {
		// A child run of one test (inChild): the parent built the binary.
		roughyBin = bin
		return m.Run()
	}
	bin, cleanup, err := testsvc.BuildRoughy()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		return 1
	}
	defer cleanup()
	roughyBin = bin
	return m.Run()
}

// fleet is one Redis, one S3 server and the nodes that share them.
type fleet struct {
	t testing.TB
	// redis is the standalone server (nil on Cluster); redisURL is what
	// the nodes get as --redis-url.
	redis    *testsvc.RedisServer
	redisURL string
	s3       testsvc.S3Server
	nodes    []*node
}

// startFleet starts Redis, versitygw and n nodes; serveArgs are added to
// every node's command line (later flags win).
func startFleet(t testing.TB, n int, serveArgs ...string) *fleet {
	t.Helper()
	f := &fleet{t: t, redis: testsvc.StartRedisServer(t), s3: testsvc.StartS3(t)}
	f.redisURL = f.redis.URL()
	for range n {
		f.nodes = append(f.nodes, f.startNode(serveArgs...))
	}
	return f
}

// startClusterFleet is startFleet on a three-master Redis Cluster.
func startClusterFleet(t testing.TB, n int, serveArgs ...string) *fleet {
	t.Helper()
	f := &fleet{t: t, redisURL: testsvc.StartRedisCluster(t), s3: testsvc.StartS3(t)}
	for range n {
		f.nodes = append(f.nodes, f.startNode(serveArgs...))
	}
	return f
}

// store opens the fleet's session store directly, to look at what the
// nodes wrote.
func (f *fleet) store(t testing.TB) *redis.Store {
	t.Helper()
	st, err := redis.New(t.Context(), f.redisURL)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// node is one `roughy serve` process.
type node struct {
	*testsvc.Roughy
	t testing.TB
}

func (f *fleet) startNode(serveArgs ...string) *node {
	t := f.t
	t.Helper()
	n := &node{&testsvc.Roughy{
		Bin: roughyBin,
		Args: append([]string{"--data-dir", t.TempDir(),
			"--sessions", "redis", "--redis-url", f.redisURL,
			"--storage", "s3", "--s3-bucket", f.s3.Bucket, "--s3-endpoint", f.s3.Endpoint,
			"--s3-region", f.s3.Region, "--s3-force-path-style",
			"--probe-workers", "1", "--lease-ttl", leaseTTL, "--max-buffer-memory", "128MiB"},
			serveArgs...),
		Env: []string{"ROUGHY_API_KEYS=" + fleetKeys, "AWS_ACCESS_KEY_ID=" + f.s3.AccessKey,
			"AWS_SECRET_ACCESS_KEY=" + f.s3.SecretKey, "AWS_REGION=" + f.s3.Region},
	}, t}
	n.Start(t)
	t.Cleanup(func() {
		n.Stop(15 * time.Second)
		if t.Failed() {
			t.Logf("node %s log:\n%s", n.URL, n.Log.Tail(6000))
		}
	})
	return n
}

// start starts the node again after kill (on a new port).
func (n *node) start() {
	n.t.Helper()
	n.Start(n.t)
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *node) kill() { n.Kill() }

// throttled is a request body that trickles out at about rate bytes per
// second, so that a test can act while a PATCH is streaming.
type throttled struct {
	data  []byte
	rate  int
	start time.Time
	sent  int
}

// Len is the whole body's length (for Content-Length).
func (r *throttled) Len() int { return len(r.data) }

func (r *throttled) Read(p []byte) (int, error) {
	if r.sent == len(r.data) {
		return 0, io.EOF
	}
	if r.start.IsZero() {
		r.start = time.Now()
	}
	if ahead := time.Duration(float64(r.sent)/float64(r.rate)*float64(time.Second)) - time.Since(r.start); ahead > 0 {
		time.Sleep(ahead)
	}
	n := copy(p[:min(len(p), 256<<10)], r.data[r.sent:])
	r.sent += n
	return n, nil
}

// pid is the running process's id.
func (n *node) pid() int { return n.PID() }

// at moves a URL of one node (Location, say) to node n.
func (n *node) at(u string) string {
	i := strings.Index(u, "/api/")
	return n.URL + u[i:]
}

var client = &http.Client{Timeout: 2 * time.Minute}

// answer is a fully read response.
type answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// send makes one TUS request (Tus-Resumable and the key set) and reads the
// whole answer.
func send(ctx context.Context, method, url string, h map[string]string, body io.Reader) (answer, error) {
	return sendAs(ctx, fleetKey, method, url, h, body)
}

// sendAs is send with another key ("": no Authorization at all).
func sendAs(ctx context.Context, key, method, url string, h map[string]string, body io.Reader) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return answer{}, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	for k, v := range h {
		req.Header.Set(k, v)
	}
	if b, ok := body.(interface{ Len() int }); ok {
		req.ContentLength = int64(b.Len())
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

func mustSend(t testing.TB, method, url string, h map[string]string, body io.Reader) answer {
	t.Helper()
	a, err := send(t.Context(), method, url, h, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return a
}

// create POSTs an upload of length bytes on n and returns its Location
// and asset id.
func create(t testing.TB, n *node, length int64) (loc, assetID string) {
	t.Helper()
	a := mustSend(t, "POST", n.URL+tusPath, map[string]string{
		"Upload-Length":   strconv.FormatInt(length, 10),
		"Upload-Metadata": "type dmlkZW8=,filename ZmxlZXQuYmlu",
	}, nil)
	if a.Status != http.StatusCreated {
		t.Fatalf("POST on %s: got %d %s, want 201", n.URL, a.Status, a.Body)
	}
	var body struct {
		SessionID string `json:"session_id"`
		Asset     struct {
			ID string `json:"id"`
		} `json:"asset"`
	}
	if err := json.Unmarshal(a.Body, &body); err != nil || body.Asset.ID == "" {
		t.Fatalf("POST body %q: %v", a.Body, err)
	}
	return a.Header.Get("Location"), body.Asset.ID
}

// patch sends data at offset to url.
func patch(ctx context.Context, url string, offset int64, data []byte) (answer, error) {
	return send(ctx, "PATCH", url, map[string]string{
		"Upload-Offset": strconv.FormatInt(offset, 10),
		"Content-Type":  "application/offset+octet-stream",
	}, bytes.NewReader(data))
}

// head answers the Upload-Offset of url (and the status).
func head(t testing.TB, url string) (int, int64) {
	t.Helper()
	a := mustSend(t, "HEAD", url, nil, nil)
	off, _ := strconv.ParseInt(a.Header.Get("Upload-Offset"), 10, 64)
	return a.Status, off
}

// assetJSON is the part of GET /api/v1/assets/{id} the tests read.
type assetJSON struct {
	State           string  `json:"state"`
	SizeBytes       int64   `json:"size_bytes"`
	SHA256          string  `json:"sha256"`
	DurationSeconds *string `json:"duration_seconds"`
	DownloadURL     string  `json:"download_url"`
}

// readyAsset GETs the asset on n until it is ready (10 s at most).
func readyAsset(t testing.TB, n *node, id string) assetJSON {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := mustSend(t, "GET", n.URL+"/api/v1/assets/"+id, nil, nil)
		var got assetJSON
		if a.Status == http.StatusOK {
			if err := json.Unmarshal(a.Body, &got); err != nil {
				t.Fatalf("asset JSON %q: %v", a.Body, err)
			}
			if got.State == "ready" {
				return got
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("asset %s on %s not ready after 10s: %d %s", id, n.URL, a.Status, a.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wantReady waits until asset id is ready on n, checks its size and
// sha256, and downloads it: the sha256 is computed from the bytes as they
// passed the node and proves nothing about what S3 holds, the presigned
// download_url serves the object itself.
func wantReady(t testing.TB, n *node, id string, src []byte) assetJSON {
	t.Helper()
	a := readyAsset(t, n, id)
	sum := sha256.Sum256(src)
	if a.SHA256 != hex.EncodeToString(sum[:]) || a.SizeBytes != int64(len(src)) {
		t.Fatalf("asset %s: got sha256 %s size %d, want %x %d", id, a.SHA256, a.SizeBytes, sum, len(src))
	}
	wantDownload(t, "asset "+id, a.DownloadURL, src)
	return a
}

// wantDownload fails unless url, an asset's download_url, serves exactly
// src; what names the upload.
func wantDownload(t testing.TB, what, url string, src []byte) {
	t.Helper()
	if err := testsvc.SameBytes(download(t, url), src); err != nil {
		t.Fatalf("%s: downloaded object: %v", what, err)
	}
}

// download GETs the asset's download_url.
func download(t testing.TB, url string) []byte {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET download_url: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET download_url: got %d (%d bytes), %v; want 200", resp.StatusCode, len(b), err)
	}
	return b
}
