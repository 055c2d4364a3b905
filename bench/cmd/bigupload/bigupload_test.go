package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"hash/crc32"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

func TestGeneratorDeterministic(t *testing.T) {
	const n = 3<<20 + 17
	whole := make([]byte, n)
	g1 := newGenerator(7)
	g1.fill(whole)

	// The same seed cut into other buffer sizes gives the same stream.
	cut := make([]byte, 0, n)
	g2 := newGenerator(7)
	for _, m := range []int{1, 4095, 1 << 20, n - 1 - 4095 - 1<<20} {
		b := make([]byte, m)
		g2.fill(b)
		cut = append(cut, b...)
	}
	if !bytes.Equal(cut, whole) {
		t.Fatal("seed 7 cut into four buffers: got other bytes than in one buffer")
	}
	want := sha256.Sum256(whole)
	if got := g1.sha256(); !bytes.Equal(got, want[:]) {
		t.Errorf("sha256: got %x, want %x (of the bytes made)", got, want)
	}
	if got := g2.sha256(); !bytes.Equal(got, want[:]) {
		t.Errorf("sha256 of the cut stream: got %x, want %x", got, want)
	}
	other := make([]byte, n)
	newGenerator(8).fill(other)
	if bytes.Equal(other, whole) {
		t.Error("seeds 7 and 8: got the same bytes")
	}

	c := chunkAt{buf: whole[100:200], base: 1000}
	p := make([]byte, 60)
	if k, err := c.ReadAt(p, 1050); k != 50 || err != io.EOF || !bytes.Equal(p[:50], whole[150:200]) {
		t.Errorf("chunkAt.ReadAt(60 bytes at 1050): got %d, %v, want 50 bytes of buf[50:] and EOF", k, err)
	}
}

// fakeClient is an aws-sdk-go-v2 client of f, configured as roughy's sink
// configures its own, so that the fake's XML is read by the real SDK.
func fakeClient(t *testing.T, f *fakeS3) *s3.Client {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return s3.New(s3.Options{
		BaseEndpoint:               aws.String(srv.URL),
		UsePathStyle:               true,
		Region:                     "us-east-1",
		Credentials:                credentials.NewStaticCredentialsProvider("any", "any-secret", ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
		RetryMaxAttempts:           1,
	})
}

func apiCode(err error) string {
	if ae, ok := errors.AsType[smithy.APIError](err); ok {
		return ae.ErrorCode()
	}
	return ""
}

func TestFakeS3ChecksParts(t *testing.T) {
	ctx := context.Background()
	f := newFakeS3("b")
	c := fakeClient(t, f)
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("b")}); err != nil {
		t.Fatalf("HeadBucket: %v", err)
	}
	mpu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String("b"), Key: aws.String("k"),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c, ChecksumType: types.ChecksumTypeFullObject,
	})
	if err != nil {
		t.Fatalf("CreateMultipartUpload: %v", err)
	}
	put := func(num int32, size int, sum string) (*s3.UploadPartOutput, error) {
		b := bytes.Repeat([]byte{byte(num)}, size)
		if sum == "" {
			sum = crcBase64(crc32.Checksum(b, castagnoli))
		}
		return c.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String("b"), Key: aws.String("k"), UploadId: mpu.UploadId, PartNumber: aws.Int32(num),
			Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(size)), ChecksumCRC32C: aws.String(sum),
		})
	}
	if _, err := put(1, 1<<10, crcBase64(12345)); apiCode(err) != "BadDigest" {
		t.Errorf("part with a wrong CRC32C: got %v, want BadDigest", err)
	}
	parts := map[int32]types.CompletedPart{}
	for num, size := range map[int32]int{1: 5 << 20, 2: 1 << 20, 3: 1 << 20} {
		out, err := put(num, size, "")
		if err != nil {
			t.Fatalf("UploadPart %d: %v", num, err)
		}
		parts[num] = types.CompletedPart{PartNumber: aws.Int32(num), ETag: out.ETag, ChecksumCRC32C: out.ChecksumCRC32C}
	}
	complete := func(nums ...int32) error {
		var ps []types.CompletedPart
		for _, n := range nums {
			ps = append(ps, parts[n])
		}
		_, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: aws.String("b"), Key: aws.String("k"), UploadId: mpu.UploadId,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: ps},
		})
		return err
	}
	for _, bad := range []struct {
		name string
		nums []int32
	}{
		{"part 2 (1 MiB) not last", []int32{1, 2, 3}},
		{"descending", []int32{2, 1}},
		{"repeated", []int32{1, 1}},
	} {
		if err := complete(bad.nums...); apiCode(err) != "InvalidPart" {
			t.Errorf("Complete %s: got %v, want InvalidPart", bad.name, err)
		}
	}
	if got := f.Completed(); len(got) != 0 {
		t.Fatalf("after refused Completes: got %+v, want none", got)
	}
	if err := complete(1, 3); err != nil {
		t.Fatalf("Complete 1, 3: %v", err)
	}
	got := f.Completed()
	if len(got) != 1 || got[0].Parts != 2 || got[0].Size != 6<<20 || got[0].MinPart != 5<<20 || got[0].LastPart != 1<<20 {
		t.Errorf("Completed: got %+v, want 2 parts of 6 MiB, 5 MiB then 1 MiB", got)
	}
	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
	if err != nil || aws.ToInt64(head.ContentLength) != 6<<20 {
		t.Errorf("HeadObject of the completed object: got %v, %v, want 6 MiB", head, err)
	}
	if f.OpenUploads() != 0 {
		t.Errorf("open uploads after Complete: got %d, want 0", f.OpenUploads())
	}
}

func TestFakeS3SmallObjects(t *testing.T) {
	ctx := context.Background()
	f := newFakeS3("b")
	c := fakeClient(t, f)
	body := "0123456789"
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String("k.tail.1"),
		Body: strings.NewReader(body), ContentLength: aws.Int64(10),
		ChecksumCRC32C: aws.String(crcBase64(crc32.Checksum([]byte(body), castagnoli)))}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("k.tail.1"), Range: aws.String("bytes=2-5")})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(b) != "2345" {
		t.Errorf("GetObject bytes=2-5: got %q, want %q", b, "2345")
	}
	list, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("b"), Prefix: aws.String("k.tail.")})
	if err != nil || len(list.Contents) != 1 || aws.ToString(list.Contents[0].Key) != "k.tail.1" || aws.ToInt64(list.Contents[0].Size) != 10 {
		t.Fatalf("ListObjectsV2: got %+v, %v, want k.tail.1 of 10 bytes", list, err)
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("b"), Key: aws.String("k.tail.1")}); err != nil {
		t.Fatalf("DeleteObject: %v", err)
	}
	if _, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("k.tail.1")}); apiCode(err) != "NoSuchKey" {
		t.Errorf("GetObject after DELETE: got %v, want NoSuchKey", err)
	}
}
