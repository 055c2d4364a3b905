package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/roughy/ingest/bench/internal/benchproc"
)

const (
	s3Access = "benchaccess"
	s3Secret = "benchsecret-0123456789"
	s3Region = "us-east-1"
	s3Bucket = "ingestbench"
)

// directOptions shape the direct (no proxy) multipart upload.
type directOptions struct {
	partSize int64
	parallel int
	signed   bool
}

// s3env is one versitygw (posix backend) shared by every run of a scenario.
type s3env struct {
	proc     *benchproc.Server
	dir      string
	endpoint string
	client   *s3.Client
}

// startS3 starts versitygw on a loopback port over a temp dir and creates
// the bucket.
func (b *bench) startS3(ctx context.Context) error {
	dir, err := b.runDir("versitygw")
	if err != nil {
		return err
	}
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("ingestbench: versitygw root: %w", err)
	}
	port, err := benchproc.FreePort()
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{"--port", addr, "--access", s3Access, "--secret", s3Secret, "--region", s3Region, "--quiet", "posix", root}
	p, err := benchproc.Start("versitygw", b.o.vgwBin, args, nil, filepath.Join(dir, "versitygw.log"))
	if err != nil {
		return err
	}
	env := &s3env{proc: p, dir: dir, endpoint: "http://" + addr}
	if err := p.WaitHTTP(ctx, http.MethodGet, env.endpoint+"/", 20*time.Second); err != nil {
		p.Stop(5 * time.Second)
		return err
	}
	env.client = s3.New(s3.Options{
		BaseEndpoint:               aws.String(env.endpoint),
		Region:                     s3Region,
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(s3Access, s3Secret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	if _, err := env.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s3Bucket)}); err != nil {
		p.Stop(5 * time.Second)
		return fmt.Errorf("ingestbench: create bucket: %w", err)
	}
	b.s3 = env
	return nil
}

func (e *s3env) stop() {
	e.proc.Stop(10 * time.Second)
	os.RemoveAll(filepath.Join(e.dir, "root"))
}

func (e *s3env) awsEnv() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s3Access,
		"AWS_SECRET_ACCESS_KEY=" + s3Secret,
		"AWS_REGION=" + s3Region,
		"AWS_DEFAULT_REGION=" + s3Region,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

func (e *s3env) roughyArgs() []string {
	return []string{"--storage", "s3", "--s3-bucket", s3Bucket, "--s3-endpoint", e.endpoint, "--s3-region", s3Region, "--s3-force-path-style"}
}

func (e *s3env) tusdArgs() []string {
	return []string{"-s3-bucket", s3Bucket, "-s3-endpoint", e.endpoint}
}

// reset deletes every object and aborts every multipart upload, so that
// each run starts from an empty bucket.
func (e *s3env) reset(ctx context.Context) error {
	mps, err := e.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(s3Bucket)})
	if err != nil {
		return fmt.Errorf("ingestbench: list multipart uploads: %w", err)
	}
	for _, u := range mps.Uploads {
		if _, err := e.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(s3Bucket), Key: u.Key, UploadId: u.UploadId}); err != nil {
			slog.Warn("abort leftover multipart upload", "key", aws.ToString(u.Key), "err", err)
		}
	}
	objs, err := e.list(ctx)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if _, err := e.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s3Bucket), Key: o.Key}); err != nil {
			return fmt.Errorf("ingestbench: delete %s: %w", aws.ToString(o.Key), err)
		}
	}
	return nil
}

func (e *s3env) list(ctx context.Context) ([]types.Object, error) {
	var out []types.Object
	p := s3.NewListObjectsV2Paginator(e.client, &s3.ListObjectsV2Input{Bucket: aws.String(s3Bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("ingestbench: list objects: %w", err)
		}
		out = append(out, page.Contents...)
	}
	return out, nil
}

// verifyObjects checks that the bucket holds n complete objects of size
// bytes and no multipart upload in progress.
func (e *s3env) verifyObjects(ctx context.Context, n int, size int64) string {
	objs, err := e.list(ctx)
	if err != nil {
		return "FAILED: " + err.Error()
	}
	full := 0
	for _, o := range objs {
		if aws.ToInt64(o.Size) == size {
			full++
		}
	}
	mps, err := e.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(s3Bucket)})
	if err != nil {
		return "FAILED: " + err.Error()
	}
	if full != n {
		return fmt.Sprintf("FAILED: %d object(s) of %d bytes in the bucket, want %d (%d objects in all)", full, size, n, len(objs))
	}
	return fmt.Sprintf("%d object(s) of %s in the bucket, %d other object(s), %d multipart upload(s) open", full, benchproc.FormatSize(size), len(objs)-full, len(mps.Uploads))
}

// runDirect uploads n objects of size bytes straight to versitygw with
// aws-sdk-go-v2 multipart uploads (the ceiling of the S3 scenario).
func (b *bench) runDirect(ctx context.Context, s sample, n int, size int64) sample {
	e := b.s3
	bases := make([]int64, n)
	for i := range n {
		bases[i] = b.src.sectionBase(i, size)
	}
	if _, err := b.src.sha256Of(bases[0], size); err != nil { // warm the page cache
		s.err = err
		return s
	}
	s3Before, _ := b.sideCPU()
	var mu sync.Mutex
	var g errgroup.Group
	start := time.Now()
	for i := range n {
		g.Go(func() error {
			lat, err := b.directUpload(ctx, fmt.Sprintf("direct/%d", i), bases[i], size)
			mu.Lock()
			s.patches = append(s.patches, lat...)
			mu.Unlock()
			return err
		})
	}
	err := g.Wait()
	s.wall = time.Since(start)
	s.s3CPU, _ = b.sideCPUSince(s3Before, -1)
	if err != nil {
		s.err = err
		return s
	}
	if b.o.verify {
		s.verify = e.verifyObjects(ctx, n, size)
	} else {
		s.verify = "skipped"
	}
	return s
}

func payloadMode(signed bool) string {
	if signed {
		return "SigV4-signed payload"
	}
	return "UNSIGNED-PAYLOAD, no SDK checksum"
}

// directUpload is one multipart upload of src[base:base+size] to key.
func (b *bench) directUpload(ctx context.Context, key string, base, size int64) ([]time.Duration, error) {
	c := b.s3.client
	var opts []func(*s3.Options)
	if !b.o.direct.signed {
		opts = append(opts, s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
	}
	mp, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(s3Bucket), Key: aws.String(key), ContentType: aws.String("application/octet-stream")})
	if err != nil {
		return nil, fmt.Errorf("ingestbench: create multipart upload: %w", err)
	}
	ps := b.o.direct.partSize
	nparts := int((size + ps - 1) / ps)
	parts := make([]types.CompletedPart, nparts)
	lat := make([]time.Duration, nparts)
	var g errgroup.Group
	g.SetLimit(max(1, b.o.direct.parallel))
	for i := range nparts {
		g.Go(func() error {
			off := int64(i) * ps
			n := min(ps, size-off)
			t0 := time.Now()
			out, err := c.UploadPart(ctx, &s3.UploadPartInput{
				Bucket:        aws.String(s3Bucket),
				Key:           aws.String(key),
				UploadId:      mp.UploadId,
				PartNumber:    aws.Int32(int32(i + 1)),
				ContentLength: aws.Int64(n),
				Body:          io.NewSectionReader(b.src.f, base+off, n),
			}, opts...)
			if err != nil {
				return fmt.Errorf("ingestbench: upload part %d: %w", i+1, err)
			}
			lat[i] = time.Since(t0)
			parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		_, _ = c.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{Bucket: aws.String(s3Bucket), Key: aws.String(key), UploadId: mp.UploadId})
		return lat, err
	}
	_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(s3Bucket), Key: aws.String(key), UploadId: mp.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return lat, fmt.Errorf("ingestbench: complete multipart upload: %w", err)
	}
	return lat, nil
}
