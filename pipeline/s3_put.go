package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// s3PutUploadID is the UploadID of the state of an upload stored with one
// PutObject: there is no multipart upload, but a state must name one to
// decode.
const s3PutUploadID = "put-object"

// PutsWhole reports whether a write of size bytes at u.Offset holds the
// whole upload within one part: Put can then store it with one PutObject
// instead of CreateMultipartUpload, UploadPart and
// CompleteMultipartUpload, the three requests a small upload otherwise
// costs S3.
func (s *S3Sink) PutsWhole(u Upload, size int64) bool {
	return u.Offset == 0 && u.Length > 0 && size == u.Length && size <= s3PartSize(u.Length)
}

// Put stores src, the whole upload u (PutsWhole), as its object with one
// PutObject carrying its CRC32C, and commits it as one part (parts.First)
// so that Complete verifies the object's size and CRC32C as for a
// multipart upload. Nothing is committed before S3 acknowledged every
// byte: a body that ends short or fails stores nothing and commits
// nothing, and the upload stays at offset 0 with its storage still to
// create (the bytes were never acknowledged; the client sends them
// again). A put that lands and whose commit fails leaves an object that
// the next attempt overwrites or that Abort deletes.
func (s *S3Sink) Put(ctx context.Context, u Upload, src *Source, parts PartRange, commit CommitFunc) (Progress, error) {
	last := Progress{Offset: u.Offset, HashState: u.HashState}
	if !s.PutsWhole(u, src.limit) || parts.Count < 1 {
		return last, fmt.Errorf("pipeline: s3 put %s: not a whole upload within one part", u.Key)
	}
	buf, err := s.pool.Get(ctx, int(u.Length))
	if err != nil {
		return last, fmt.Errorf("pipeline: s3 put buffer: %w", err)
	}
	defer s.pool.Put(buf)
	n, crc, rerr := fillPart(src, buf, 0, 0)
	if rerr == nil || (errors.Is(rerr, io.EOF) && int64(n) == u.Length) {
		// A reader may give its last bytes with io.EOF.
		rerr = probeEnd(src)
	}
	if rerr != nil || int64(n) != u.Length {
		// Short (ErrTruncated follows from the caller), failed or too
		// long: store nothing.
		return last, readEnd(rerr)
	}
	sum := crcHeader(crc)
	out, err := settled(ctx, s3SettleGrace, buf[:n], func(ctx context.Context, body io.ReadSeeker) (*s3.PutObjectOutput, error) {
		in := &s3.PutObjectInput{
			Bucket: &s.cfg.Bucket, Key: aws.String(u.Key), Body: body,
			ContentLength: aws.Int64(int64(n)), ChecksumCRC32C: sum,
		}
		if u.ContentType != "" {
			in.ContentType = aws.String(u.ContentType)
		}
		return s.client.PutObject(ctx, in, unsignedPayload)
	})
	if err != nil {
		return last, s3Err(ctx, "put object "+u.Key, err)
	}
	st := s3State{UploadID: s3PutUploadID, PartSize: s3PartSize(u.Length), Checksum: string(types.ChecksumAlgorithmCrc32c), Put: true}
	pr := Progress{Offset: src.Offset(), HashState: src.HashState(), Storage: st.encode(), Parts: []Part{{
		Number: parts.First, ETag: aws.ToString(out.ETag), Size: int64(n), Offset: 0, Checksum: *sum,
	}}}
	if err := commit(ctx, pr); err != nil {
		return last, err
	}
	return pr, nil
}
