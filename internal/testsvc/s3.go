package testsvc

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// S3Binary is where `go install github.com/versity/versitygw/cmd/versitygw@v1.8.0`
// puts the S3 server the tests run; `versitygw` on PATH is used otherwise.
const S3Binary = "/root/go/bin/versitygw"

// s3StartTimeout bounds how long versitygw may take to answer.
const s3StartTimeout = 15 * time.Second

// S3Server is a running versitygw (posix backend in a temp dir) with one
// fresh bucket. Path-style addressing is required.
type S3Server struct {
	Endpoint  string // http://127.0.0.1:PORT
	Bucket    string
	AccessKey string
	SecretKey string
	Region    string
	// Dir is the posix backend's root (buckets are its sub-directories).
	Dir string
}

// StartS3 starts versitygw on a free loopback port, waits until it
// answers, creates a unique bucket and kills the server when the test ends.
func StartS3(t testing.TB) S3Server {
	t.Helper()
	bin := S3Binary
	if _, err := os.Stat(bin); err != nil {
		p, lerr := exec.LookPath("versitygw")
		if lerr != nil {
			t.Fatalf("versitygw not found at %s nor on PATH: install it with `go install github.com/versity/versitygw/cmd/versitygw@v1.8.0`", S3Binary)
		}
		bin = p
	}
	srv := S3Server{
		AccessKey: "roughytest" + s3RandHex(t, 4),
		SecretKey: s3RandHex(t, 20),
		Region:    "us-east-1",
		Dir:       t.TempDir(),
		Bucket:    "roughy-" + s3RandHex(t, 6),
	}
	// A free port can be taken between probing it and versitygw binding
	// it: try a few.
	var lastErr error
	for range 3 {
		port := FreePort(t)
		srv.Endpoint = "http://127.0.0.1:" + strconv.Itoa(port)
		if lastErr = s3Launch(t, bin, srv, port); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("testsvc: start versitygw: %v", lastErr)
	}
	if err := srv.Do(http.MethodPut, "/"+srv.Bucket, nil); err != nil {
		t.Fatalf("testsvc: create bucket %s: %v", srv.Bucket, err)
	}
	return srv
}

// s3Launch starts versitygw on port and waits until it answers HTTP; the
// process is killed at cleanup.
func s3Launch(t testing.TB, bin string, srv S3Server, port int) error {
	logPath := filepath.Join(t.TempDir(), "versitygw.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin,
		"--port", "127.0.0.1:"+strconv.Itoa(port),
		"--region", srv.Region,
		"--quiet",
		"posix", srv.Dir)
	// Keys through the environment, not argv (ps shows argv).
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+srv.AccessKey, "ROOT_SECRET_KEY="+srv.SecretKey)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	exited := make(chan struct{})
	var once sync.Once
	go func() {
		cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	kill := func() {
		once.Do(func() {
			cmd.Process.Kill()
			<-exited
		})
	}
	t.Cleanup(kill)

	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(s3StartTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("versitygw exited: %s", s3LastLines(string(b), 10))
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			// Any HTTP answer (403 for an anonymous GET) means it serves.
			if resp, err := http.Get("http://" + addr + "/"); err == nil {
				resp.Body.Close()
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	kill()
	b, _ := os.ReadFile(logPath)
	return fmt.Errorf("versitygw did not answer on %s within %v: %s", addr, s3StartTimeout, s3LastLines(string(b), 10))
}

// Do sends a SigV4-signed request with body to the server (path-style
// path, e.g. "/bucket" or "/bucket/key") and fails unless it answers 2xx.
// It exists so this package needs no AWS SDK.
func (s S3Server) Do(method, path string, body []byte) error {
	req, err := http.NewRequest(method, s.Endpoint+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	s.sign(req, body, time.Now().UTC())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, msg)
	}
	return nil
}

// Keys lists the object keys under prefix (ListObjectsV2, first 1000).
func (s S3Server) Keys(prefix string) ([]string, error) {
	return s.listKeys("list-type=2&prefix=" + url.QueryEscape(prefix))
}

// MultipartKeys lists the keys of the multipart uploads in progress under
// prefix.
func (s S3Server) MultipartKeys(prefix string) ([]string, error) {
	return s.listKeys("prefix=" + url.QueryEscape(prefix) + "&uploads=")
}

// listKeys GETs the bucket with query (already canonical: sorted, encoded)
// and returns every <Key> of the answer.
func (s S3Server) listKeys(query string) ([]string, error) {
	req, err := http.NewRequest(http.MethodGet, s.Endpoint+"/"+s.Bucket+"?"+query, nil)
	if err != nil {
		return nil, err
	}
	s.sign(req, nil, time.Now().UTC())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET ?%s: %s: %s", query, resp.Status, body)
	}
	var keys []string
	for _, m := range s3KeyRE.FindAllSubmatch(body, -1) {
		keys = append(keys, string(m[1]))
	}
	return keys, nil
}

var s3KeyRE = regexp.MustCompile(`<Key>([^<]*)</Key>`)

// sign adds AWS Signature Version 4 headers for service s3.
func (s S3Server) sign(req *http.Request, body []byte, now time.Time) {
	amzDate := now.Format("20060102T150405Z")
	day := now.Format("20060102")
	sum := sha256.Sum256(body)
	payload := hex.EncodeToString(sum[:])
	req.Header.Set("X-Amz-Date", amzDate)
	req.Header.Set("X-Amz-Content-Sha256", payload)
	host := req.URL.Host
	canonical := strings.Join([]string{
		req.Method,
		req.URL.EscapedPath(),
		req.URL.RawQuery,
		"host:" + host + "\n" + "x-amz-content-sha256:" + payload + "\n" + "x-amz-date:" + amzDate + "\n",
		"host;x-amz-content-sha256;x-amz-date",
		payload,
	}, "\n")
	scope := day + "/" + s.Region + "/s3/aws4_request"
	csum := sha256.Sum256([]byte(canonical))
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(csum[:])
	key := s3HMAC([]byte("AWS4"+s.SecretKey), day)
	key = s3HMAC(key, s.Region)
	key = s3HMAC(key, "s3")
	key = s3HMAC(key, "aws4_request")
	sig := hex.EncodeToString(s3HMAC(key, toSign))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+s.AccessKey+"/"+scope+
		", SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="+sig)
}

func s3HMAC(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

func s3RandHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func s3LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
