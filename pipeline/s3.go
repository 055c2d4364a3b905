package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3Config configures an S3Sink. Start from DefaultS3Config; a zero
// field takes its default.
type S3Config struct {
	Bucket string
	// Endpoint is the S3 endpoint URL; "" for AWS's own.
	Endpoint string
	// Region; "" takes the AWS chain's, else us-east-1.
	Region         string
	ForcePathStyle bool
	// Layout is S3LayoutDefault ("" too) or S3LayoutEqual (every part but
	// the last of the same size, for Cloudflare R2); see s3_plan.go.
	Layout string
	// PartConcurrency bounds the parts of one write uploading at once.
	// The global bound is the Pool's budget.
	PartConcurrency int
	// PresignTTL is the lifetime of URL's presigned GETs when it is given
	// no ttl.
	PresignTTL time.Duration
	// MaxAttempts bounds the SDK's attempts per S3 call; 5xx, throttling
	// and timeouts are retried with jittered backoff.
	MaxAttempts int
	// StallTimeout fails an S3 request attempt whose connection moves no
	// byte either way for this long (negative: never). A slow request
	// that keeps moving is not cut (see bulkConn).
	StallTimeout time.Duration
	// Observer, when set, is told of every S3 request (metrics, traces).
	Observer Observer
}

// DefaultS3Config returns the S3 settings `roughy serve --storage s3`
// starts from: its --s3-* and --presign-ttl flags' defaults are these
// values. A zero field of an S3Config takes its value here; none of them
// can be off, but StallTimeout is never enforced when negative.
func DefaultS3Config() S3Config {
	return S3Config{
		Layout:          S3LayoutDefault,
		PartConcurrency: 4,
		PresignTTL:      time.Hour,
		MaxAttempts:     5,
		StallTimeout:    30 * time.Second,
	}
}

// s3Multipart is the multipart half of the S3 API the sink calls.
type s3Multipart interface {
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, opts ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error)
}

// s3Objects is the object half of the S3 API the sink calls (tails,
// reads, cleanup, readiness).
type s3Objects interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, opts ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	HeadBucket(ctx context.Context, in *s3.HeadBucketInput, opts ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
}

// s3API is everything the sink calls on S3.
type s3API interface {
	s3Multipart
	s3Objects
}

// s3Presigner signs GET URLs.
type s3Presigner interface {
	PresignGetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error)
}

// S3Sink stores each upload as one S3 multipart upload (see Write for the
// data path and s3_plan.go for the part plan). It is safe for concurrent
// use.
type S3Sink struct {
	cfg     S3Config
	client  s3API
	presign s3Presigner
	pool    *Pool
}

var _ Sink = (*S3Sink)(nil)

// NewS3Sink returns a sink writing to cfg.Bucket with credentials from the
// AWS default chain (AWS_ACCESS_KEY_ID…, shared config, IMDS). Part
// buffers come from pool, whose budget bounds the memory of all uploads.
//
// The SDK does not hash payloads: request checksums are computed only
// where S3 requires them, parts and tails carry the CRC32C the sink
// computes while copying the bytes in (x-amz-checksum-crc32c, which S3
// verifies), and their SigV4 payload hash is UNSIGNED-PAYLOAD.
func NewS3Sink(ctx context.Context, cfg S3Config, pool *Pool) (*S3Sink, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("pipeline: s3: no bucket")
	}
	if pool == nil {
		return nil, errors.New("pipeline: s3: no buffer pool")
	}
	switch cfg.Layout {
	case "":
		cfg.Layout = S3LayoutDefault
	case S3LayoutDefault, S3LayoutEqual:
	default:
		return nil, fmt.Errorf("pipeline: s3: unknown layout %q", cfg.Layout)
	}
	def := DefaultS3Config()
	if cfg.PartConcurrency <= 0 {
		cfg.PartConcurrency = def.PartConcurrency
	}
	if cfg.PresignTTL <= 0 {
		cfg.PresignTTL = def.PresignTTL
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = def.MaxAttempts
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = def.StallTimeout
	}
	// Every part is one request: keep enough idle connections for all
	// uploads' parts in flight, not the SDK's 10 per host, so busy nodes
	// do not reconnect for every part.
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConns = 1024
		tr.MaxIdleConnsPerHost = 1024
		tr.DialContext = bulkDialer(tr.DialContext, cfg.StallTimeout)
	})
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = cfg.MaxAttempts
				o.MaxBackoff = 5 * time.Second
				// The client-side retry quota would turn an S3 brownout
				// into immediate failures; backoff is enough.
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("pipeline: s3: load aws config: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.ForcePathStyle
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	var api s3API = client
	if cfg.Observer != nil {
		api = observedS3{api: client, obs: cfg.Observer}
	}
	return &S3Sink{cfg: cfg, client: api, presign: s3.NewPresignClient(client), pool: pool}, nil
}

// unsignedPayload makes a call sign UNSIGNED-PAYLOAD instead of hashing
// the body (the body carries our own CRC32C instead).
func unsignedPayload(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
}

// s3Err maps an S3 error: NoSuchUpload becomes ErrNoSuchUpload, the end of
// ctx stays a context error, anything else (it outlived the SDK's retries)
// wraps ErrStorage.
func s3Err(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if isS3Code(err, "NoSuchUpload") {
		return fmt.Errorf("pipeline: s3 %s: %w", op, ErrNoSuchUpload)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("pipeline: s3 %s: %w", op, context.Cause(ctx))
	}
	return fmt.Errorf("pipeline: s3 %s: %w: %w", op, ErrStorage, err)
}

// isS3Code reports whether err is an S3 API error with one of codes.
func isS3Code(err error, codes ...string) bool {
	apiErr, ok := errors.AsType[smithy.APIError](err)
	if !ok {
		return false
	}
	for _, c := range codes {
		if apiErr.ErrorCode() == c {
			return true
		}
	}
	return false
}

func isS3NotFound(err error) bool {
	if _, ok := errors.AsType[*types.NotFound](err); ok {
		return true
	}
	return isS3Code(err, "NoSuchKey", "NotFound")
}

// Create starts the upload's multipart upload (Content-Type from u) and
// fixes its part size.
func (s *S3Sink) Create(ctx context.Context, u Upload) ([]byte, error) {
	in := &s3.CreateMultipartUploadInput{
		Bucket: &s.cfg.Bucket, Key: aws.String(u.Key),
		// Parts carry the CRC32C the pipeline computes anyway; declaring
		// it lets S3 verify the whole object from the part checksums.
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
		ChecksumType:      types.ChecksumTypeFullObject,
	}
	if u.ContentType != "" {
		in.ContentType = aws.String(u.ContentType)
	}
	out, err := s.client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return nil, s3Err(ctx, "create multipart upload "+u.Key, err)
	}
	st := s3State{UploadID: aws.ToString(out.UploadId), PartSize: s3PartSize(u.Length), Checksum: string(types.ChecksumAlgorithmCrc32c)}
	return st.encode(), nil
}

// PartsFor returns the part numbers a write of size bytes (-1: up to
// MaxChunk) at u.Offset can complete (see s3PartsFor).
func (s *S3Sink) PartsFor(u Upload, size int64) int32 {
	st, err := decodeS3State(u.Storage)
	if err != nil {
		st = s3State{PartSize: s3PartSize(u.Length)}
	}
	return s3PartsFor(u.Length, u.Offset, st.TailSize, st.PartSize, size)
}

// Complete completes the multipart upload from parts (sorted by Offset).
// It is idempotent: when S3 no longer knows the upload but the object
// exists with the expected size, the upload was completed before. An
// upload of no bytes becomes an empty object.
func (s *S3Sink) Complete(ctx context.Context, u Upload, parts []Part) error {
	st, err := decodeS3State(u.Storage)
	if err != nil {
		return err
	}
	// Refuse before anything is cleaned up: a tail deleted or a multipart
	// upload completed short cannot be undone.
	if err := checkPlan(u, st, parts); err != nil {
		return err
	}
	size := u.Length
	if st.Put {
		// The object was stored whole by Put: it only needs checking.
		return s.verifyObject(ctx, u.Key, size, parts)
	}
	if len(parts) == 0 {
		return s.completeEmpty(ctx, u, st)
	}
	completed := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		completed[i] = types.CompletedPart{PartNumber: aws.Int32(p.Number), ETag: aws.String(p.ETag)}
		if st.Checksum != "" {
			completed[i].ChecksumCRC32C = aws.String(p.Checksum)
		}
	}
	_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &s.cfg.Bucket,
		Key:             aws.String(u.Key),
		UploadId:        aws.String(st.UploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
	})
	if err != nil {
		err = s3Err(ctx, "complete multipart upload "+u.Key, err)
		if !errors.Is(err, ErrNoSuchUpload) {
			return err
		}
		head, herr := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.cfg.Bucket, Key: aws.String(u.Key)})
		if herr != nil || aws.ToInt64(head.ContentLength) != size {
			return err
		}
	}
	if err := s.verifyObject(ctx, u.Key, size, parts); err != nil {
		// The tails stay: the committed state may still need them.
		return err
	}
	if err := s.deleteTails(ctx, u.Key); err != nil {
		// The object is complete; leftover tails are garbage, not data.
		slog.WarnContext(ctx, "pipeline: s3 delete tails", "key", u.Key, "err", err)
	}
	return nil
}

// completeEmpty completes an upload of no bytes: S3 cannot complete a
// multipart upload without parts, so the object is put empty.
func (s *S3Sink) completeEmpty(ctx context.Context, u Upload, st s3State) error {
	in := &s3.PutObjectInput{Bucket: &s.cfg.Bucket, Key: aws.String(u.Key), Body: strings.NewReader(""), ContentLength: aws.Int64(0)}
	if u.ContentType != "" {
		in.ContentType = aws.String(u.ContentType)
	}
	if _, err := s.client.PutObject(ctx, in); err != nil {
		return s3Err(ctx, "put empty object "+u.Key, err)
	}
	if err := s.verifyObject(ctx, u.Key, 0, nil); err != nil {
		return err
	}
	s.cleanup(ctx, u.Key, st.UploadID)
	return nil
}

// Abort aborts the multipart upload and deletes the upload's object and
// tail objects. The object goes too: once an upload is completed its bytes
// live there, and a presigned download URL issued before a DELETE must
// stop working with it. It is idempotent.
func (s *S3Sink) Abort(ctx context.Context, u Upload) error {
	st, err := decodeS3State(u.Storage)
	if err == nil && !st.Put {
		_, err = s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket: &s.cfg.Bucket, Key: aws.String(u.Key), UploadId: aws.String(st.UploadID),
		})
		if err = s3Err(ctx, "abort multipart upload "+u.Key, err); err != nil && !errors.Is(err, ErrNoSuchUpload) {
			return err
		}
	}
	if err := s.deleteObject(ctx, u.Key); err != nil {
		return err
	}
	return s.deleteTails(ctx, u.Key)
}

// cleanup aborts a multipart upload no longer needed and deletes the
// key's tails, logging failures (the bytes are garbage, not data).
func (s *S3Sink) cleanup(ctx context.Context, key, uploadID string) {
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: &s.cfg.Bucket, Key: aws.String(key), UploadId: aws.String(uploadID),
	})
	if err = s3Err(ctx, "abort multipart upload "+key, err); err != nil && !errors.Is(err, ErrNoSuchUpload) {
		slog.WarnContext(ctx, "pipeline: s3 cleanup", "key", key, "err", err)
	}
	if err := s.deleteTails(ctx, key); err != nil {
		slog.WarnContext(ctx, "pipeline: s3 delete tails", "key", key, "err", err)
	}
}

// tailPrefix is the key prefix of an upload's tail objects.
func tailPrefix(key string) string { return key + ".tail." }

// deleteTails deletes every tail object of key, committed or orphaned by
// a write that lost a race or crashed.
func (s *S3Sink) deleteTails(ctx context.Context, key string) error {
	prefix := tailPrefix(key)
	var token *string
	for {
		out, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
			Bucket: &s.cfg.Bucket, Prefix: aws.String(prefix), ContinuationToken: token,
		})
		if err != nil {
			return s3Err(ctx, "list tails of "+key, err)
		}
		for _, o := range out.Contents {
			if err := s.deleteObject(ctx, aws.ToString(o.Key)); err != nil {
				return err
			}
		}
		if !aws.ToBool(out.IsTruncated) || out.NextContinuationToken == nil {
			return nil
		}
		token = out.NextContinuationToken
	}
}

func (s *S3Sink) deleteObject(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.cfg.Bucket, Key: aws.String(key)})
	if err != nil && !isS3NotFound(err) {
		return s3Err(ctx, "delete "+key, err)
	}
	return nil
}

// Open returns a ReaderAt over a completed object (ranged GETs).
func (s *S3Sink) Open(ctx context.Context, key string) (Object, error) {
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.cfg.Bucket, Key: aws.String(key)})
	if err != nil {
		if isS3NotFound(err) {
			return nil, fmt.Errorf("pipeline: s3 open %s: %w", key, ErrNoSuchUpload)
		}
		return nil, s3Err(ctx, "open "+key, err)
	}
	return &s3Object{s: s, ctx: ctx, key: key, size: aws.ToInt64(head.ContentLength)}, nil
}

// s3Object reads a completed object with ranged GETs. It keeps the ctx of
// Open because io.ReaderAt has no ctx of its own; it lives no longer than
// the caller that opened it.
type s3Object struct {
	s    *S3Sink
	ctx  context.Context
	key  string
	size int64
}

func (o *s3Object) Size() int64  { return o.size }
func (o *s3Object) Path() string { return "" }
func (o *s3Object) Close() error { return nil }

// ReadAt reads len(p) bytes at off with one ranged GET.
func (o *s3Object) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("pipeline: s3 read %s: negative offset", o.key)
	}
	if off >= o.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	end := min(off+int64(len(p)), o.size)
	out, err := o.s.client.GetObject(o.ctx, &s3.GetObjectInput{
		Bucket: &o.s.cfg.Bucket, Key: aws.String(o.key),
		Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, end-1)),
	})
	if err != nil {
		return 0, s3Err(o.ctx, "read "+o.key, err)
	}
	defer out.Body.Close()
	n, err := io.ReadFull(out.Body, p[:end-off])
	if err != nil {
		return n, s3Err(o.ctx, "read "+o.key, err)
	}
	if end-off < int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

// URL returns a presigned GET of key valid for ttl (cfg.PresignTTL when
// ttl <= 0).
func (s *S3Sink) URL(ctx context.Context, key string, ttl time.Duration) (string, error) {
	return s.DownloadURL(ctx, key, ttl, ResponseHeaders{})
}

// DownloadURL is URL whose answer carries h's headers, which S3 takes
// from the signed response-content-type and response-content-disposition
// parameters.
func (s *S3Sink) DownloadURL(ctx context.Context, key string, ttl time.Duration, h ResponseHeaders) (string, error) {
	if ttl <= 0 {
		ttl = s.cfg.PresignTTL
	}
	in := &s3.GetObjectInput{Bucket: &s.cfg.Bucket, Key: aws.String(key)}
	if h.ContentType != "" {
		in.ResponseContentType = aws.String(h.ContentType)
	}
	if h.ContentDisposition != "" {
		in.ResponseContentDisposition = aws.String(h.ContentDisposition)
	}
	req, err := s.presign.PresignGetObject(ctx, in, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("pipeline: s3 presign %s: %w", key, err)
	}
	return req.URL, nil
}

// Ping checks the bucket is reachable (HeadBucket).
func (s *S3Sink) Ping(ctx context.Context) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.cfg.Bucket})
	return s3Err(ctx, "head bucket "+s.cfg.Bucket, err)
}
