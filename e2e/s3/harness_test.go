package s3e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/roughy/ingest/internal/testsvc"
)

const (
	mib = 1 << 20

	// Static keys of every server (ROUGHY_API_KEYS).
	acmeKey    = "rk_live_s3e2eacmeacmeacmeacmeacme00001"
	globexKey  = "rk_live_s3e2eglobexglobexglobexglob00002"
	staticKeys = "acme=" + acmeKey + ",globex=" + globexKey

	tusPath    = "/api/v1/assets/upload-resumable"
	assetsPath = "/api/v1/assets/"

	// testTimeout bounds every test; the http client's timeout bounds
	// every request.
	testTimeout = 4 * time.Minute
	httpTimeout = 2 * time.Minute

	// versitygwBinary is where `go install …/versitygw@v1.8.0` puts it.
	versitygwBinary = "/root/go/bin/versitygw"
	gwRegion        = "us-east-1"
)

// roughyBin is the binary TestMain built from ./cmd/roughy.
var roughyBin string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	bin, cleanup, err := testsvc.BuildRoughy()
	if err != nil {
		fmt.Fprintln(os.Stderr, "s3e2e:", err)
		return 1
	}
	defer cleanup()
	roughyBin = bin
	return m.Run()
}

// testCtx is the test's context with the suite's time bound.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// gateway is one versitygw process (posix backend) that a test can kill
// and start again on the same port and directory. internal/testsvc's
// StartS3 cannot be restarted, which the storage-down test needs.
type gateway struct {
	t         *testing.T
	bin       string
	port      int
	Dir       string
	Endpoint  string
	Bucket    string
	AccessKey string
	SecretKey string
	log       *testsvc.LogBuffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// startGateway starts versitygw on a free loopback port with a fresh
// bucket; it is killed when the test ends.
func startGateway(t *testing.T) *gateway {
	t.Helper()
	bin := versitygwBinary
	if _, err := os.Stat(bin); err != nil {
		p, lerr := exec.LookPath("versitygw")
		if lerr != nil {
			t.Fatalf("versitygw not found at %s nor on PATH: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0", versitygwBinary)
		}
		bin = p
	}
	g := &gateway{
		t: t, bin: bin, Dir: t.TempDir(), log: &testsvc.LogBuffer{},
		Bucket:    fmt.Sprintf("roughy-e2e-%d", time.Now().UnixNano()%1e9),
		AccessKey: "s3e2eaccess", SecretKey: "s3e2esecretsecretsecretsecret",
	}
	t.Cleanup(func() {
		g.Kill()
		if t.Failed() {
			t.Logf("versitygw log:\n%s", g.log.Tail(3000))
		}
	})
	var err error
	for range 3 { // the free port can be taken before versitygw binds it
		g.port = testsvc.FreePort(t)
		g.Endpoint = "http://127.0.0.1:" + strconv.Itoa(g.port)
		if err = g.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := g.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &g.Bucket}); err != nil {
		t.Fatalf("create bucket %s: %v", g.Bucket, err)
	}
	return g
}

// start runs versitygw on g's port and dir and waits until it answers
// HTTP.
func (g *gateway) start() error {
	addr := "127.0.0.1:" + strconv.Itoa(g.port)
	cmd := exec.Command(g.bin, "--port", addr, "--region", gwRegion, "--quiet", "posix", g.Dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+g.AccessKey, "ROOT_SECRET_KEY="+g.SecretKey)
	cmd.Stdout, cmd.Stderr = g.log, g.log
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	g.mu.Lock()
	g.cmd, g.exited = cmd, exited
	g.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("versitygw exited at start: %s", g.log.Tail(1000))
		default:
		}
		if resp, err := http.Get("http://" + addr + "/"); err == nil {
			resp.Body.Close() // any answer (403 to an anonymous GET) means it serves
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.Kill()
	return fmt.Errorf("versitygw did not answer on %s within 20s: %s", addr, g.log.Tail(1000))
}

// Kill stops versitygw with SIGKILL and waits until it exited.
func (g *gateway) Kill() {
	g.mu.Lock()
	cmd, exited := g.cmd, g.exited
	g.cmd = nil
	g.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Restart starts versitygw again on the same port and directory.
func (g *gateway) Restart() {
	g.t.Helper()
	var err error
	for range 20 { // the port may linger a moment after the kill
		if err = g.start(); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	g.t.Fatalf("restart versitygw on port %d: %v", g.port, err)
}

// Client is an S3 client of the gateway that checks what roughy stored.
// It asks for checksums only where S3 requires them.
func (g *gateway) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:                     gwRegion,
		BaseEndpoint:               aws.String(g.Endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(g.AccessKey, g.SecretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// MultipartUploads lists every multipart upload in progress in the bucket.
func (g *gateway) MultipartUploads(ctx context.Context) []types.MultipartUpload {
	g.t.Helper()
	out, err := g.Client().ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &g.Bucket})
	if err != nil {
		g.t.Fatalf("ListMultipartUploads: %v", err)
	}
	return out.Uploads
}

// checkNoMultipartUploads fails the test (not fatally) if a multipart
// upload is still in progress in the bucket; when says at which point.
func (g *gateway) checkNoMultipartUploads(ctx context.Context, when string) {
	g.t.Helper()
	if ups := g.MultipartUploads(ctx); len(ups) != 0 {
		g.t.Errorf("%s: %d multipart uploads left, want 0", when, len(ups))
	}
}

// Objects lists the keys in the bucket under prefix.
func (g *gateway) Objects(ctx context.Context, prefix string) []string {
	g.t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(g.Client(), &s3.ListObjectsV2Input{Bucket: &g.Bucket, Prefix: &prefix})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			g.t.Fatalf("ListObjectsV2 %q: %v", prefix, err)
		}
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

// CheckObject fails the test unless key holds exactly want, with
// contentType when it is not "".
func (g *gateway) CheckObject(ctx context.Context, key string, want []byte, contentType string) {
	g.t.Helper()
	head, err := g.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: &g.Bucket, Key: &key})
	if err != nil {
		g.t.Fatalf("HeadObject %s: %v", key, err)
	}
	if got := aws.ToInt64(head.ContentLength); got != int64(len(want)) {
		g.t.Errorf("HeadObject %s: ContentLength %d, want %d", key, got, len(want))
	}
	if ct := aws.ToString(head.ContentType); contentType != "" && ct != contentType {
		g.t.Errorf("HeadObject %s: ContentType %q, want %q", key, ct, contentType)
	}
	checkBytes(g.t, "object "+key, g.Object(ctx, key), want)
}

// Object reads the object key whole.
func (g *gateway) Object(ctx context.Context, key string) []byte {
	g.t.Helper()
	obj, err := g.Client().GetObject(ctx, &s3.GetObjectInput{Bucket: &g.Bucket, Key: &key})
	if err != nil {
		g.t.Fatalf("GetObject %s: %v", key, err)
	}
	got, err := io.ReadAll(obj.Body)
	obj.Body.Close()
	if err != nil {
		g.t.Fatalf("GetObject %s: read: %v", key, err)
	}
	return got
}

// checkBytes fails unless got equals want, naming the first difference.
func checkBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Errorf("%s: got %d bytes, want %d; first difference at byte %d", what, len(got), len(want), i)
}

// roughy is one `roughy serve --storage s3` process.
type roughy struct {
	*testsvc.Roughy
	DataDir string
}

// startRoughy starts roughy serve against gw (sessions local unless args
// say otherwise) on a free loopback port and waits for /healthz. It is
// stopped at cleanup.
func startRoughy(t *testing.T, gw *gateway, args ...string) *roughy {
	t.Helper()
	r := &roughy{DataDir: t.TempDir()}
	r.Roughy = &testsvc.Roughy{
		Bin: roughyBin,
		Args: append([]string{
			"--data-dir", r.DataDir,
			"--storage", "s3",
			"--s3-bucket", gw.Bucket,
			"--s3-endpoint", gw.Endpoint,
			"--s3-region", gwRegion,
			"--s3-force-path-style",
			"--probe-workers", "0",
			"--max-buffer-memory", "256MiB",
			"--shutdown-timeout", "5s",
		}, args...),
		Env: []string{
			"ROUGHY_API_KEYS=" + staticKeys,
			"AWS_ACCESS_KEY_ID=" + gw.AccessKey,
			"AWS_SECRET_ACCESS_KEY=" + gw.SecretKey,
			"AWS_EC2_METADATA_DISABLED=true",
			"AWS_CONFIG_FILE=/dev/null",
			"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		},
	}
	r.Start(t)
	t.Cleanup(func() {
		r.Stop(10 * time.Second)
		if t.Failed() {
			t.Logf("roughy log:\n%s", r.Log.Tail(6000))
		}
	})
	return r
}

// errNoOffset marks a reply without a parsable Upload-Offset.
var errNoOffset = errors.New("no Upload-Offset")

// offsetOf parses a reply's Upload-Offset.
func offsetOf(h http.Header) (int64, error) {
	v := h.Get("Upload-Offset")
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return -1, fmt.Errorf("%w (%q)", errNoOffset, v)
	}
	return n, nil
}
