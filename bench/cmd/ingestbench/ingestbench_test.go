package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/roughy/ingest/bench/internal/benchproc"
)

func TestScrapeCommitQuantiles(t *testing.T) {
	body := `# TYPE roughy_commit_seconds histogram
roughy_commit_seconds_bucket{backend="redis",le="0.001"} 0
roughy_commit_seconds_bucket{backend="redis",le="0.002"} 50
roughy_commit_seconds_bucket{backend="redis",le="0.004"} 99
roughy_commit_seconds_bucket{backend="redis",le="+Inf"} 100
roughy_commit_seconds_sum{backend="redis"} 0.2
roughy_commit_seconds_count{backend="redis"} 100
roughy_patch_seconds_bucket{le="1"} 7
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) }))
	defer srv.Close()
	h, name := scrapeCommit(t.Context(), srv.URL)
	if h == nil || name != "roughy_commit_seconds" {
		t.Fatalf("got %v %q, want the commit histogram", h, name)
	}
	if got := h.quantile(0.5); math.Abs(got-0.002) > 1e-9 {
		t.Errorf("p50: got %g, want 0.002", got)
	}
	if got := h.quantile(0.99); math.Abs(got-0.004) > 1e-9 {
		t.Errorf("p99: got %g, want 0.004", got)
	}
}

func TestMedian(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("odd: got %g, want 2", got)
	}
	if got := median([]float64{4, 1, 2, 3}); got != 2.5 {
		t.Errorf("even: got %g, want 2.5", got)
	}
}

func TestRedisProxyCounts(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed")
	}
	dir := t.TempDir()
	port, err := benchproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := benchproc.Start("redis", bin, []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir}, nil, filepath.Join(dir, "redis.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(5 * time.Second)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; ; i++ {
		if _, err := redisCmd(addr, "PING"); err == nil {
			break
		} else if i > 100 {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	px, err := startRedisProxy(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer px.close()
	c, err := net.Dial("tcp", px.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// One pipeline of three RESP commands (one round trip), then a script
	// that runs two commands inside redis (one command on the wire).
	pipe := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$6\r\nEXISTS\r\n$1\r\nk\r\n"
	if _, err := io.WriteString(c, pipe); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	var out []byte
	for range 3 {
		if _, err := readRESP(r, &out, nil); err != nil {
			t.Fatal(err)
		}
	}
	script := "redis.call('set','a','1'); return redis.call('get','a')"
	if _, err := fmt.Fprintf(c, "*3\r\n$4\r\nEVAL\r\n$%d\r\n%s\r\n$1\r\n0\r\n", len(script), script); err != nil {
		t.Fatal(err)
	}
	if _, err := readRESP(r, &out, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the proxy records before it forwards; the sleep only spares a loaded machine
	stats, trips := px.snapshot()
	if trips != 2 {
		t.Errorf("round trips: got %d, want 2", trips)
	}
	for _, name := range []string{"set", "get", "exists", "eval"} {
		if s := stats[name]; s == nil || s.calls != 1 || len(s.lat) != 1 {
			t.Errorf("%s: got %+v, want 1 call with 1 latency", name, s)
		}
	}
}

func TestScriptNames(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sessionstore", "redis"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := "package redis\n\nvar luaCommit = goredis.NewScript(`\nreturn 1\n`)\n"
	if err := os.WriteFile(filepath.Join(dir, "sessionstore", "redis", "lua.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	sum := sha1.Sum([]byte("\nreturn 1\n"))
	sha := hex.EncodeToString(sum[:])[:8]
	if got := scriptNames()[sha]; got != "Commit" {
		t.Errorf("scriptNames()[%s]: got %q, want Commit", sha, got)
	}
}
