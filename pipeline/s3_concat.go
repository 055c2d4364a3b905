package pipeline

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// s3MaxCopyPart is S3's largest part, also for UploadPartCopy.
const s3MaxCopyPart = 5 << 30

// Concat builds dst from the completed srcs in order, in dst's own
// multipart upload (created by Create), and completes it.
//
// A src of at least 5 MiB (or the last one) is copied server-side with
// UploadPartCopy, in ranges of at most 5 GiB: no byte through the proxy.
// S3 wants every part but the last to hold 5 MiB, so smaller srcs (TUS
// parallel uploads of small files) cannot be parts of their own: their
// bytes are read through the proxy into a pooled 5 MiB buffer, topped up
// from the start of the next src when needed, and uploaded as one part.
// At most 5 MiB per run of small srcs goes through the proxy.
func (s *S3Sink) Concat(ctx context.Context, dst Upload, srcs []Upload) ([]byte, []Part, error) {
	st, err := decodeS3State(dst.Storage)
	if err != nil {
		return nil, nil, err
	}
	c := &s3Concat{s: s, key: dst.Key, uploadID: st.UploadID, next: 1}
	defer c.release()
	for i, src := range srcs {
		if err := c.add(ctx, src, i == len(srcs)-1); err != nil {
			return nil, nil, fmt.Errorf("pipeline: s3 concat %s: %w", dst.Key, err)
		}
	}
	if err := c.flush(ctx); err != nil {
		return nil, nil, fmt.Errorf("pipeline: s3 concat %s: %w", dst.Key, err)
	}
	storage := dst.Storage
	if err := s.Complete(ctx, dst, c.parts); err != nil {
		return nil, nil, err
	}
	return storage, c.parts, nil
}

// s3Concat accumulates the parts of a concatenation.
type s3Concat struct {
	s        *S3Sink
	key      string
	uploadID string
	next     int32
	off      int64
	parts    []Part
	// buf holds bytes of small srcs waiting to reach a part's size; owned
	// by the Concat call, put back by release.
	buf []byte
	n   int
}

func (c *s3Concat) release() {
	if c.buf != nil {
		c.s.pool.Put(c.buf)
		c.buf = nil
	}
}

// add appends the completed src (src.Length bytes at src.Key).
func (c *s3Concat) add(ctx context.Context, src Upload, last bool) error {
	size := src.Length
	if size < 0 {
		size = src.Offset
	}
	var pos int64
	if c.n > 0 {
		// Top the pending bytes up to a part from src's start.
		take := min(int64(s3MinPartSize-c.n), size)
		if err := c.readInto(ctx, src.Key, pos, take); err != nil {
			return err
		}
		pos += take
		if c.n >= s3MinPartSize {
			if err := c.flush(ctx); err != nil {
				return err
			}
		}
	}
	rest := size - pos
	switch {
	case rest == 0:
		return nil
	case rest >= s3MinPartSize || (last && c.n == 0):
		return c.copyRange(ctx, src.Key, pos, rest)
	}
	return c.readInto(ctx, src.Key, pos, rest)
}

// copyRange copies [pos, pos+n) of key into parts server-side, in equal
// ranges of at most 5 GiB (each at least 5 MiB when n is).
func (c *s3Concat) copyRange(ctx context.Context, key string, pos, n int64) error {
	k := (n + s3MaxCopyPart - 1) / s3MaxCopyPart
	step := (n + k - 1) / k
	for n > 0 {
		m := min(step, n)
		if c.next > s3MaxParts {
			return fmt.Errorf("%w: concatenation needs more than %d parts", ErrStorage, s3MaxParts)
		}
		out, err := c.s.client.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
			Bucket:          &c.s.cfg.Bucket,
			Key:             aws.String(c.key),
			UploadId:        aws.String(c.uploadID),
			PartNumber:      aws.Int32(c.next),
			CopySource:      aws.String(url.PathEscape(c.s.cfg.Bucket) + "/" + escapeKey(key)),
			CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", pos, pos+m-1)),
		})
		if err != nil {
			return s3Err(ctx, fmt.Sprintf("copy part %d from %s", c.next, key), err)
		}
		var etag, sum string
		if out.CopyPartResult != nil {
			etag = aws.ToString(out.CopyPartResult.ETag)
			sum = aws.ToString(out.CopyPartResult.ChecksumCRC32C)
		}
		c.parts = append(c.parts, Part{Number: c.next, ETag: etag, Size: m, Offset: c.off, Checksum: sum})
		c.next++
		c.off += m
		pos += m
		n -= m
	}
	return nil
}

// escapeKey escapes an object key for x-amz-copy-source, keeping "/".
func escapeKey(key string) string {
	return (&url.URL{Path: key}).EscapedPath()
}

// readInto appends [pos, pos+n) of key to the pending buffer.
func (c *s3Concat) readInto(ctx context.Context, key string, pos, n int64) error {
	if n == 0 {
		return nil
	}
	if c.buf == nil {
		b, err := c.s.pool.Get(ctx, s3MinPartSize)
		if err != nil {
			return fmt.Errorf("concat buffer: %w", err)
		}
		c.buf = b
	}
	if int64(c.n)+n > int64(len(c.buf)) {
		return errors.New("concat buffer overflow")
	}
	out, err := c.s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: &c.s.cfg.Bucket, Key: aws.String(key),
		Range: aws.String(fmt.Sprintf("bytes=%d-%d", pos, pos+n-1)),
	})
	if err != nil {
		return s3Err(ctx, "read "+key, err)
	}
	defer out.Body.Close()
	if _, err := io.ReadFull(out.Body, c.buf[c.n:c.n+int(n)]); err != nil {
		return s3Err(ctx, "read "+key, err)
	}
	c.n += int(n)
	return nil
}

// flush uploads the pending bytes as one part.
func (c *s3Concat) flush(ctx context.Context) error {
	if c.n == 0 {
		return nil
	}
	b := c.buf[:c.n]
	crc := crc32.Checksum(b, castagnoli)
	etag, sum, err := c.s.uploadPart(ctx, c.key, c.uploadID, c.next, b, crc)
	if err != nil {
		return err
	}
	c.parts = append(c.parts, Part{Number: c.next, ETag: etag, Size: int64(c.n), Offset: c.off, Checksum: sum})
	c.next++
	c.off += int64(c.n)
	c.n = 0
	return nil
}
