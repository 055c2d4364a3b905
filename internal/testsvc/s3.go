package testsvc

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// S3Binary is where `go install github.com/versity/versitygw/cmd/versitygw@v1.8.0`
// puts the S3 server the tests run; `versitygw` on PATH is used otherwise.
const S3Binary = "/root/go/bin/versitygw"

// SeaweedBinary is where scripts/setup-deps.sh builds SeaweedFS's `weed`;
// `weed` on PATH is used otherwise.
const SeaweedBinary = "/root/go/bin/weed"

// S3Backend names an S3 implementation the tests can run against.
type S3Backend string

const (
	// Versitygw is versitygw's posix backend in a temp dir. On ext4 it
	// cannot complete a multipart upload of more than about 1,000 parts.
	Versitygw S3Backend = "versitygw"
	// SeaweedFS is `weed server -s3` (master, volume server, filer and S3
	// gateway in one process) with no identities: it accepts any
	// signature.
	SeaweedFS S3Backend = "seaweedfs"
)

// S3Backends are the implementations the S3 behaviour suites run against.
var S3Backends = []S3Backend{Versitygw, SeaweedFS}

// s3StartTimeout bounds how long a server may take to answer; SeaweedFS
// starts its S3 gateway 2 s after the master, and its filer must find a
// volume server before a write succeeds.
const s3StartTimeout = 30 * time.Second

// S3Server is a running S3 server with one fresh bucket. Path-style
// addressing is required.
type S3Server struct {
	Endpoint  string // http://127.0.0.1:PORT
	Bucket    string
	AccessKey string
	SecretKey string
	Region    string
	// Dir is the server's data directory (for versitygw the posix
	// backend's root: buckets are its sub-directories).
	Dir string
	// Backend is which implementation serves.
	Backend S3Backend
	// ChecksSignatures is false where any signature is accepted
	// (SeaweedFS without identities): a test of a refused signature only
	// means something where it is true.
	ChecksSignatures bool
}

// StartS3 starts versitygw on a free loopback port, waits until it
// answers, creates a unique bucket and kills the server when the test ends.
func StartS3(t testing.TB) S3Server {
	t.Helper()
	return StartS3Proc(t, Versitygw).S3Server
}

// StartSeaweed is StartS3 for SeaweedFS: a fresh bucket on the test
// binary's shared weed (see StartS3Backend).
func StartSeaweed(t testing.TB) S3Server {
	t.Helper()
	return StartS3Backend(t, SeaweedFS)
}

// StartS3Backend starts backend like StartS3 does versitygw, except that
// for SeaweedFS it gives a fresh bucket on one weed shared by every test
// of the test binary: a weed takes 10-15 s before it stores its first
// object (its filer waits for peers that a fresh cluster does not have),
// which per test would cost minutes per package. Tests that kill the
// server use StartS3Proc. A package whose tests use the shared weed calls
// StopSharedS3 from TestMain, after m.Run.
func StartS3Backend(t testing.TB, backend S3Backend) S3Server {
	t.Helper()
	if backend != SeaweedFS {
		return StartS3Proc(t, backend).S3Server
	}
	p, err := sharedSeaweed()
	if err != nil {
		t.Fatalf("testsvc: shared seaweedfs: %v", err)
	}
	srv := p.S3Server
	srv.Bucket = "roughy-" + s3RandHex(t, 6)
	if err := p.newBucket(srv.Bucket); err != nil {
		t.Fatalf("testsvc: seaweedfs: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shared seaweedfs log:\n%s", p.Log.Tail(4000))
		}
	})
	return srv
}

var shared struct {
	mu  sync.Mutex
	p   *S3Proc
	err error
}

// sharedSeaweed starts the shared weed on first use.
func sharedSeaweed() (*S3Proc, error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.p != nil || shared.err != nil {
		return shared.p, shared.err
	}
	bin, err := s3LookBinary(SeaweedFS)
	if err != nil {
		shared.err = err
		return nil, err
	}
	dir, err := os.MkdirTemp("", "roughy-seaweedfs-")
	if err != nil {
		shared.err = err
		return nil, err
	}
	p := newS3Proc(SeaweedFS, bin, dir)
	// No test owns it: should the test binary die before StopSharedS3,
	// the kernel kills weed with it.
	p.deathSignal = true
	if err := p.launch(); err != nil {
		os.RemoveAll(dir)
		shared.err = err
		return nil, err
	}
	shared.p = p
	return p, nil
}

// RunStoppingSharedS3 is a TestMain's m.Run for a package whose tests use
// the shared weed: it runs the tests, then stops the weed and removes its
// data (a package that did not left a data dir in the temp dir per run).
func RunStoppingSharedS3(m *testing.M) int {
	code := m.Run()
	StopSharedS3()
	return code
}

// StopSharedS3 kills the shared weed, if one started, and removes its
// data.
func StopSharedS3() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if p := shared.p; p != nil {
		p.Kill()
		RemoveSeaweedSockets(p.ports)
		os.RemoveAll(p.Dir)
		shared.p = nil
	}
}

// S3Proc is a running S3 server that a test can kill and start again on
// the same ports and directory (a storage outage). It is killed at cleanup.
type S3Proc struct {
	S3Server
	// Log is the server's output, shown when the test failed.
	Log *LogBuffer

	t           testing.TB // nil for the shared weed
	bin         string
	ports       []int // versitygw: the S3 port; SeaweedFS: see SeaweedArgs
	deathSignal bool  // SIGKILL the server when the test binary dies

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func newS3Proc(backend S3Backend, bin, dir string) *S3Proc {
	return &S3Proc{
		S3Server: S3Server{
			// Any keys do for SeaweedFS; versitygw gets these.
			AccessKey:        "roughytest" + s3Hex(4),
			SecretKey:        s3Hex(20),
			Region:           "us-east-1",
			Dir:              dir,
			Backend:          backend,
			ChecksSignatures: backend == Versitygw,
		},
		Log: &LogBuffer{},
		bin: bin,
	}
}

// StartS3Proc starts its own backend on free loopback ports with a fresh
// data directory, waits until it answers, and creates a unique bucket,
// into which it can write.
func StartS3Proc(t testing.TB, backend S3Backend) *S3Proc {
	t.Helper()
	bin, err := s3LookBinary(backend)
	if err != nil {
		t.Fatalf("testsvc: %v", err)
	}
	p := newS3Proc(backend, bin, t.TempDir())
	p.t = t
	p.Bucket = "roughy-" + s3RandHex(t, 6)
	t.Cleanup(func() {
		p.Kill()
		if backend == SeaweedFS && len(p.ports) == SeaweedPorts {
			RemoveSeaweedSockets(p.ports)
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", backend, p.Log.Tail(4000))
		}
	})
	if err := p.launch(); err != nil {
		t.Fatalf("testsvc: start %s: %v", backend, err)
	}
	if err := p.newBucket(p.Bucket); err != nil {
		t.Fatalf("testsvc: %s: %v", backend, err)
	}
	return p
}

// launch starts the server on free ports. A free port can be taken
// between probing it and the server binding it: it tries a few.
func (p *S3Proc) launch() error {
	nports := 1
	if p.Backend == SeaweedFS {
		nports = SeaweedPorts
	}
	var err error
	for range 3 {
		if p.Backend == SeaweedFS && len(p.ports) == SeaweedPorts {
			RemoveSeaweedSockets(p.ports)
		}
		p.ports = p.ports[:0]
		for range nports {
			port, perr := s3FreePort()
			if perr != nil {
				return perr
			}
			p.ports = append(p.ports, port)
		}
		p.Endpoint = "http://127.0.0.1:" + strconv.Itoa(p.ports[0])
		if err = p.start(); err == nil {
			return nil
		}
	}
	return err
}

// newBucket creates bucket and waits until it takes writes.
func (p *S3Proc) newBucket(bucket string) error {
	if err := p.Do(http.MethodPut, "/"+bucket, nil); err != nil {
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	return p.waitWritable(bucket)
}

// Restart starts the server again on the same ports and directory after
// Kill, and waits until the bucket takes writes again.
func (p *S3Proc) Restart() {
	p.t.Helper()
	var err error
	for range 20 { // a port may linger a moment after the kill
		if err = p.start(); err == nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err == nil {
		err = p.waitWritable(p.Bucket)
	}
	if err != nil {
		p.t.Fatalf("testsvc: restart %s on %s: %v", p.Backend, p.Endpoint, err)
	}
}

// Kill stops the server with SIGKILL and waits until it exited.
func (p *S3Proc) Kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// start launches the server on p's ports and dir and waits until its S3
// port answers HTTP.
func (p *S3Proc) start() error {
	var cmd *exec.Cmd
	switch p.Backend {
	case Versitygw:
		cmd = exec.Command(p.bin,
			"--port", "127.0.0.1:"+strconv.Itoa(p.ports[0]),
			"--region", p.Region,
			"--quiet",
			"posix", p.Dir)
		// Keys through the environment, not argv (ps shows argv).
		cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+p.AccessKey, "ROOT_SECRET_KEY="+p.SecretKey)
	case SeaweedFS:
		cmd = exec.Command(p.bin, SeaweedArgs(p.Dir, p.ports)...)
		cmd.Env = append(os.Environ(), SeaweedEnv...)
		// weed reads master.toml, security.toml … from its working
		// directory among others: give it one without any.
		cmd.Dir = p.Dir
	}
	cmd.Stdout, cmd.Stderr = p.Log, p.Log
	if p.deathSignal {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()

	addr := "127.0.0.1:" + strconv.Itoa(p.ports[0])
	deadline := time.Now().Add(s3StartTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("%s exited: %s", p.Backend, s3LastLines(p.Log.Tail(3000), 10))
		default:
		}
		// Any HTTP answer (403 for an anonymous GET) means it serves.
		if resp, err := s3ProbeClient.Get("http://" + addr + "/"); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.Kill()
	return fmt.Errorf("%s did not answer on %s within %v: %s", p.Backend, addr, s3StartTimeout, s3LastLines(p.Log.Tail(3000), 10))
}

// waitWritable waits until an object can be stored in the bucket: SeaweedFS
// answers S3 before its volume server has registered with its master, and
// a write then fails. The probe object is deleted, so the bucket is empty
// again.
func (p *S3Proc) waitWritable(bucket string) error {
	key := "/" + bucket + "/.testsvc-probe"
	deadline := time.Now().Add(s3StartTimeout)
	var err error
	for time.Now().Before(deadline) {
		if err = p.Do(http.MethodPut, key, []byte("probe")); err == nil {
			return p.Do(http.MethodDelete, key, nil)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("bucket %s takes no write within %v: %v", bucket, s3StartTimeout, err)
}

// s3Client bounds every request of Do and the listings: a server that
// stops answering fails the test instead of hanging it.
var s3Client = &http.Client{Timeout: 30 * time.Second}

// s3ProbeClient polls a starting server: a request to a process that is
// still starting must not hang the poll.
var s3ProbeClient = &http.Client{Timeout: 2 * time.Second}

// s3LookBinary finds backend's binary where scripts/setup-deps.sh puts
// it, then on PATH.
func s3LookBinary(backend S3Backend) (string, error) {
	path, name, how := S3Binary, "versitygw", "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 (scripts/setup-deps.sh)"
	switch backend {
	case Versitygw:
	case SeaweedFS:
		path, name, how = SeaweedBinary, "weed", "scripts/setup-deps.sh builds it"
	default:
		return "", fmt.Errorf("unknown S3 backend %q", backend)
	}
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found at %s nor on PATH: %s", name, path, how)
	}
	return p, nil
}

// s3FreePort is FreePort without a test.
func s3FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
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
	resp, err := s3Client.Do(req)
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
	resp, err := s3Client.Do(req)
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
