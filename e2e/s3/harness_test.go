package s3e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
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

	gwRegion = "us-east-1"
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
	defer testsvc.StopSharedS3()
	roughyBin = bin
	return m.Run()
}

// testCtx is the test's context with the suite's time bound.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// gateway is a fresh bucket on an S3 server (versitygw or SeaweedFS).
type gateway struct {
	testsvc.S3Server
	t *testing.T
	// proc is the server when the test owns it (startOwnGateway): only
	// then can it Kill and Restart it.
	proc *testsvc.S3Proc
}

// eachS3 runs test as one subtest per S3 implementation, named by it.
func eachS3(t *testing.T, test func(*testing.T, testsvc.S3Backend)) {
	for _, b := range testsvc.S3Backends {
		t.Run(string(b), func(t *testing.T) { test(t, b) })
	}
}

// startGateway gives the test a fresh bucket on backend: its own
// versitygw, or the test binary's shared SeaweedFS.
func startGateway(t *testing.T, backend testsvc.S3Backend) *gateway {
	t.Helper()
	return &gateway{S3Server: testsvc.StartS3Backend(t, backend), t: t}
}

// startOwnGateway starts a server of backend for this test alone, which
// it can Kill and Restart on the same ports and directory.
func startOwnGateway(t *testing.T, backend testsvc.S3Backend) *gateway {
	t.Helper()
	p := testsvc.StartS3Proc(t, backend)
	return &gateway{S3Server: p.S3Server, t: t, proc: p}
}

// Kill stops the server with SIGKILL (startOwnGateway only).
func (g *gateway) Kill() { g.own().Kill() }

// Restart starts the server again on the same ports and directory and
// waits until the bucket takes writes (startOwnGateway only).
func (g *gateway) Restart() { g.own().Restart() }

func (g *gateway) own() *testsvc.S3Proc {
	g.t.Helper()
	if g.proc == nil {
		g.t.Fatal("the S3 server is shared: start it with startOwnGateway to kill it")
	}
	return g.proc
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
