package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestServeRedisWaitFlags: --redis-wait-aof (or its twin
// ROUGHY_REDIS_WAIT_AOF) on a server without WAITAOF (Redis < 7.2, as
// Debian's 7.0 here) stops serve at start with an error naming WAITAOF;
// out-of-range --redis-wait-replicas and --redis-wait-timeout are usage
// errors. On a server with WAITAOF the first case is skipped.
func TestServeRedisWaitFlags(t *testing.T) {
	server := testsvc.StartRedisServer(t)
	info, err := testsvc.RedisCommand(server.Addr(), "INFO", "server")
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"serve", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--sessions", "redis", "--redis-url", server.URL()}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{name: "wait-aof flag", args: []string{"--redis-wait-aof"}, code: 1, want: "WAITAOF"},
		{name: "wait-aof env", env: map[string]string{"ROUGHY_REDIS_WAIT_AOF": "true"}, code: 1, want: "WAITAOF"},
		{name: "negative replicas", args: []string{"--redis-wait-replicas", "-1"}, code: 2, want: "--redis-wait-replicas"},
		{name: "negative replicas env", env: map[string]string{"ROUGHY_REDIS_WAIT_REPLICAS": "-1"}, code: 2, want: "--redis-wait-replicas"},
		{name: "timeout too long", args: []string{"--redis-wait-replicas", "1", "--redis-wait-timeout", "5s"}, code: 2, want: "--redis-wait-timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == "WAITAOF" && !strings.Contains(info, "redis_version:7.0") && !strings.Contains(info, "redis_version:6.") {
				t.Skip("this redis-server may have WAITAOF")
			}
			var out, errb bytes.Buffer
			c := cli{stdout: &out, stderr: &errb, lookup: envMap(tc.env)}
			// A serve that did start is stopped, and fails the test below.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if got := c.run(ctx, append(append([]string{}, base...), tc.args...)); got != tc.code || !strings.Contains(errb.String(), tc.want) {
				t.Fatalf("roughy %v: exit %d, stderr %q; want exit %d naming %s", tc.args, got, errb.String(), tc.code, tc.want)
			}
			if strings.Contains(out.String(), "listening") {
				t.Fatalf("serve started: %s", out.String())
			}
		})
	}
}

// TestServeRedisWaitReplicas runs serve on a Redis primary with one
// replica. Waiting for that replica (ROUGHY_REDIS_WAIT_REPLICAS=1), an
// upload completes and downloads whole; waiting for two
// (--redis-wait-replicas 2), a PATCH's commit is not acknowledged and the
// client gets 503.
func TestServeRedisWaitReplicas(t *testing.T) {
	primary := testsvc.StartRedisServer(t)
	testsvc.StartRedisReplica(t, primary)
	const key = "rk_live_waitreplicastestkey0000000"
	env := []string{"ROUGHY_SESSIONS=redis", "ROUGHY_REDIS_URL=" + primary.URL(), "ROUGHY_API_KEYS=acme=" + key,
		"ROUGHY_PROBE_WORKERS=0", "ROUGHY_REDIS_WAIT_REPLICAS=1"}
	one := startServe(t, filepath.Join(t.TempDir(), "one"), env)
	path, data := randomFile(t, 1<<20+7)
	opts := testOptions(t, one.endpoint())
	opts.Key = key
	res, err := runUpload(t.Context(), opts, path, io.Discard)
	if err != nil {
		t.Fatalf("upload waiting for 1 replica of 1: %v", err)
	}
	var a struct {
		State       string `json:"state"`
		DownloadURL string `json:"download_url"`
	}
	if err := json.Unmarshal(res.Asset, &a); err != nil || a.State != "ready" {
		t.Fatalf("asset %s (%v), want ready", res.Asset, err)
	}
	resp, err := http.Get(a.DownloadURL)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("download: HTTP %d, %d bytes (%v); want the %d bytes uploaded", resp.StatusCode, len(got), err, len(data))
	}

	two := startServe(t, filepath.Join(t.TempDir(), "two"), env, "--redis-wait-replicas", "2", "--redis-wait-timeout", "100ms")
	send := func(method, url string, h map[string]string, body []byte) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Tus-Resumable", "1.0.0")
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	created := send("POST", two.endpoint(), map[string]string{"Upload-Length": "10", "Upload-Metadata": "type dmlkZW8="}, nil)
	loc := created.Header.Get("Location")
	if created.StatusCode != http.StatusCreated || loc == "" {
		t.Fatalf("POST: got %d, Location %q; want 201", created.StatusCode, loc)
	}
	if p := send("PATCH", loc, map[string]string{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
		[]byte("0123456789")); p.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("PATCH waiting for 2 replicas of 1: got %d, want 503", p.StatusCode)
	}
}
