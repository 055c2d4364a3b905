package proxy

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// update rewrites the golden files of this package's tests from what the
// code does now (go test ./proxy -run 'RouteWalk|ErrorCatalogue' -update).
var update = flag.Bool("update", false, "rewrite golden files from the current behaviour")

// walkPaths are one path of every route and the near misses around them.
var walkPaths = []string{
	"/api/v1/assets/upload-resumable",
	"/api/v1/assets/upload-resumable/",
	"/api/v1/assets/upload-resumable/unknown-id",
	"/api/v1/assets/upload-resumable/unknown-id/",
	"/api/v1/assets/upload-resumable/bad!id",
	"/api/v1/assets/upload-resumablex",
	"/api/v1/assets/unknown-id",
	"/api/v1/assets/",
	"/api/v1/assets",
	"/api/v1/webhooks",
	"/api/v1/webhooks/",
	"/api/v1/webhooks/unknown-id",
	"/api/v1/webhooks/unknown-id/deliveries",
	"/api/v1/webhooks/unknown-id/other",
	"/api/v1/quota",
	"/api/v1/quota/",
	"/api/v1/direct-uploads",
	"/api/v1/direct-uploads/unknown-id",
	"/api/v1/direct-uploads/unknown-id/tus?token=x",
	"/api/v1/direct-uploads/unknown-id/other",
	"/sign/assets/uploads/unknown-id?token=1.x",
	"/",
	"/page/nope.js",
	"/page/",
	"/healthz",
	"/readyz",
	"/nope",
}

var walkMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "POST+DELETE"}

// walkVariant is a set of request headers; key adds acme's API key.
type walkVariant struct {
	name string
	h    []string
	key  bool
	// expect sends Expect: 100-continue and a 4-byte body (POST and
	// PATCH only), the body after a 100 Continue.
	expect bool
}

var walkVariants = []walkVariant{
	{name: "plain"},
	{name: "tus", h: []string{"Tus-Resumable", "1.0.0"}},
	{name: "tus-key", h: []string{"Tus-Resumable", "1.0.0"}, key: true},
	{name: "ietf8-key", h: []string{"Upload-Draft-Interop-Version", "8"}, key: true},
	{name: "ietf3", h: []string{"Upload-Draft-Interop-Version", "3"}},
	{name: "preflight", h: []string{"Origin", "https://app.example", "Access-Control-Request-Method", "PATCH", "Tus-Resumable", "1.0.0"}},
	{name: "preflight-ietf", h: []string{"Origin", "https://app.example", "Access-Control-Request-Method", "PATCH", "Upload-Draft-Interop-Version", "6"}},
	{name: "origin-denied", h: []string{"Origin", "https://evil.example", "Access-Control-Request-Method", "PATCH"}},
	{name: "expect-tus", h: []string{"Tus-Resumable", "1.0.0"}, expect: true},
	{name: "expect-tus-key", h: []string{"Tus-Resumable", "1.0.0"}, key: true, expect: true},
	{name: "expect-ietf-key", h: []string{"Upload-Draft-Interop-Version", "8"}, key: true, expect: true},
}

// TestRouteWalk sends every method with every header variant to every
// route and compares the answers, byte for byte but for Date, with
// testdata/routes.golden: the route table, its middleware and the error
// renderers must not change a status, a header or a body.
func TestRouteWalk(t *testing.T) {
	// Each distinct answer is written once, numbered; each path and
	// variant lists the answer of every method.
	var cases, answers bytes.Buffer
	seen := map[string]int{}
	for _, origins := range [][]string{nil, {"https://app.example"}} {
		e := newEnv(t, func(c *Config) { c.CORSOrigins = origins }, nil)
		fmt.Fprintf(&cases, "### CORSOrigins %q\n", origins)
		for _, p := range walkPaths {
			for _, v := range walkVariants {
				fmt.Fprintf(&cases, "%s [%s]", p, v.name)
				for _, m := range walkMethods {
					if v.expect && !strings.HasPrefix(m, "POST") && m != "PATCH" && m != "PUT" {
						continue
					}
					a := walkOne(t, e, m, p, v)
					n, ok := seen[a]
					if !ok {
						n = len(seen) + 1
						seen[a] = n
						fmt.Fprintf(&answers, "## #%d\n%s\n", n, a)
					}
					fmt.Fprintf(&cases, " %s=#%d", m, n)
				}
				cases.WriteString("\n")
			}
		}
	}
	cases.WriteString("\n")
	golden(t, "testdata/routes.golden", append(cases.Bytes(), answers.Bytes()...))
}

// walkOne sends one request on a connection of its own and returns the
// raw answers (a 1xx, then the final one).
func walkOne(t *testing.T, e *env, method, path string, v walkVariant) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	m, override, _ := strings.Cut(method, "+")
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: example.test\r\nX-Request-Id: walk\r\n", m, path)
	if override != "" {
		fmt.Fprintf(&b, "X-HTTP-Method-Override: %s\r\n", override)
	}
	for i := 0; i+1 < len(v.h); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", v.h[i], v.h[i+1])
	}
	if v.key {
		fmt.Fprintf(&b, "Authorization: Bearer %s\r\n", e.keys["acme"])
	}
	body := ""
	if v.expect {
		body = "abcd"
		b.WriteString("Expect: 100-continue\r\nContent-Length: 4\r\n")
	} else if m == "POST" || m == "PATCH" || m == "PUT" {
		b.WriteString("Content-Length: 0\r\n")
	}
	b.WriteString("\r\n")
	if _, err := c.Write(b.Bytes()); err != nil {
		t.Fatalf("write: %v", err)
	}
	br := bufio.NewReader(c)
	var got strings.Builder
	for {
		status, n := readWalkHead(t, br, &got)
		if status == 100 && body != "" {
			if _, err := io.WriteString(c, body); err != nil {
				t.Fatalf("write body: %v", err)
			}
			continue
		}
		if m != "HEAD" && n > 0 {
			p := make([]byte, n)
			if _, err := io.ReadFull(br, p); err != nil {
				t.Fatalf("%s %s [%s]: read body: %v", method, path, v.name, err)
			}
			got.Write(p)
			got.WriteString("\n")
		}
		if status >= 200 {
			return got.String()
		}
	}
}

// readWalkHead copies a response head but its Date into got and returns
// its status and Content-Length.
func readWalkHead(t *testing.T, br *bufio.Reader, got *strings.Builder) (status, length int) {
	t.Helper()
	for first := true; ; first = false {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read head: %v (so far %q)", err, got.String())
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return status, length
		}
		if first {
			f := strings.Fields(line)
			status, _ = strconv.Atoi(f[1])
		}
		name, val, _ := strings.Cut(line, ": ")
		switch strings.ToLower(name) {
		case "date":
			continue
		case "content-length":
			length, _ = strconv.Atoi(val)
		}
		got.WriteString(line + "\n")
	}
}

// golden compares got with the file at path, or rewrites it with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	section := ""
	for i := range max(len(gl), len(wl)) {
		g, w := "", ""
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if strings.HasPrefix(w, "## ") || strings.HasPrefix(w, "/") {
			section = w
		}
		if g != w {
			t.Fatalf("%s differs from the code at line %d (in %q):\ngot  %q\nwant %q", path, i+1, section, g, w)
		}
	}
}
