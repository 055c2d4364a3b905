package pipeline

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Observer is told of every S3 request the sink makes: the caller's
// metrics and traces (the proxy's), without the pipeline knowing about
// either. Implementations must be safe for concurrent use.
type Observer interface {
	// StartS3 is called as an S3 request of operation op (the SDK's name:
	// "UploadPart", "CompleteMultipartUpload", …) starts; part is its part
	// number, 0 when it has none. The request runs with the returned
	// context (a tracer puts its span there), and done is called once
	// with the request's error when the request returns: nil on success,
	// and also when S3 answered that an object or multipart upload does
	// not exist, an expected answer of the sink's idempotent calls (an
	// abort of a completed upload, a check for a tail), not a failure.
	StartS3(ctx context.Context, op string, part int32) (context.Context, func(error))
}

// observedS3 is an s3API that reports each call to an Observer. It sits
// at the sink's S3 boundary, so each SDK call (after the SDK's own
// retries) is one observation.
type observedS3 struct {
	api s3API
	obs Observer
}

var _ s3API = observedS3{}

func (o observedS3) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	ctx, done := o.obs.StartS3(ctx, "CreateMultipartUpload", 0)
	out, err := o.api.CreateMultipartUpload(ctx, in, opts...)
	done(observedErr(err))
	return out, err
}

func (o observedS3) UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	ctx, done := o.obs.StartS3(ctx, "UploadPart", aws.ToInt32(in.PartNumber))
	out, err := o.api.UploadPart(ctx, in, opts...)
	done(observedErr(err))
	return out, err
}

func (o observedS3) UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, opts ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error) {
	ctx, done := o.obs.StartS3(ctx, "UploadPartCopy", aws.ToInt32(in.PartNumber))
	out, err := o.api.UploadPartCopy(ctx, in, opts...)
	done(observedErr(err))
	return out, err
}

func (o observedS3) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	ctx, done := o.obs.StartS3(ctx, "CompleteMultipartUpload", 0)
	out, err := o.api.CompleteMultipartUpload(ctx, in, opts...)
	done(observedErr(err))
	return out, err
}

func (o observedS3) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	ctx, done := o.obs.StartS3(ctx, "AbortMultipartUpload", 0)
	out, err := o.api.AbortMultipartUpload(ctx, in, opts...)
	done(observedErr(err))
	return out, err
}

func (o observedS3) ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error) {
	ctx, done := o.obs.StartS3(ctx, "ListParts", 0)
	out, err := o.api.ListParts(ctx, in, opts...)
	done(observedErr(err))
	return out, err
}

func (o observedS3) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	ctx, done := o.obs.StartS3(ctx, "PutObject", 0)
	out, err := o.api.PutObject(ctx, in, opts...)
	done(observedErr(err))
	return out, err
}

func (o observedS3) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	// Measured until the response headers: the body is read later, at
	// the caller's pace.
	ctx, done := o.obs.StartS3(ctx, "GetObject", 0)
	out, err := o.api.GetObject(ctx, in, opts...)
	done(observedErr(err))
	return out, err
}

func (o observedS3) HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	ctx, done := o.obs.StartS3(ctx, "HeadObject", 0)
	out, err := o.api.HeadObject(ctx, in, opts...)
	done(observedErr(err))
	return out, err
}

func (o observedS3) DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, opts ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	ctx, done := o.obs.StartS3(ctx, "DeleteObject", 0)
	out, err := o.api.DeleteObject(ctx, in, opts...)
	done(observedErr(err))
	return out, err
}

func (o observedS3) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	ctx, done := o.obs.StartS3(ctx, "ListObjectsV2", 0)
	out, err := o.api.ListObjectsV2(ctx, in, opts...)
	done(observedErr(err))
	return out, err
}

func (o observedS3) HeadBucket(ctx context.Context, in *s3.HeadBucketInput, opts ...func(*s3.Options)) (*s3.HeadBucketOutput, error) {
	ctx, done := o.obs.StartS3(ctx, "HeadBucket", 0)
	out, err := o.api.HeadBucket(ctx, in, opts...)
	done(err) // a missing bucket is a failure (readyz)
	return out, err
}

// observedErr is err as the Observer sees it: "no such upload / key"
// answers are not failures (see Observer).
func observedErr(err error) error {
	if err != nil && (isS3Code(err, "NoSuchUpload") || isS3NotFound(err)) {
		return nil
	}
	return err
}
