package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roughy/ingest/internal/testsvc"
)

func TestCRC32CCombine(t *testing.T) {
	data := testData(7, 3<<20+123)
	for _, cut := range []int{0, 1, 4095, 4096, 1 << 20, len(data) - 1, len(data)} {
		a, b := data[:cut], data[cut:]
		got := crc32cCombine(crc32.Checksum(a, castagnoli), crc32.Checksum(b, castagnoli), int64(len(b)))
		if want := crc32.Checksum(data, castagnoli); got != want {
			t.Errorf("cut at %d: combined %08x, want %08x", cut, got, want)
		}
	}
}

// TestS3DeferredEmptyLastWrite: an upload whose length is learned on a
// last write with no body (TUS PATCH with Upload-Length and no bytes, the
// draft's empty Upload-Complete: ?1 append) must store the tail the
// earlier writes left, as its last part. Storage used to hold only the
// parts: 3 MiB sent in one PATCH completed as an empty object.
func TestS3DeferredEmptyLastWrite(t *testing.T) { eachS3(t, testS3DeferredEmptyLastWrite) }

func testS3DeferredEmptyLastWrite(t *testing.T, backend testsvc.S3Backend) {
	cases := [][]int{
		{3 << 20},
		{1},
		{4095, 1},
		{5<<20 - 1, 8},
		{17 << 20},
		{11 << 20, 5<<20 + 1},
	}
	for _, layout := range []string{S3LayoutDefault, S3LayoutEqual} {
		t.Run(layout, func(t *testing.T) {
			e := newS3Env(t, backend, layout)
			for i, sizes := range cases {
				t.Run(fmt.Sprint(sizes), func(t *testing.T) {
					total := 0
					for _, n := range sizes {
						total += n
					}
					data := testData(uint64(100+i), total)
					su := e.create(t, fmt.Sprintf("uploads/deferred-%s-%d", layout, i), -1)
					off := 0
					for _, n := range sizes {
						if _, _, err := su.write(t.Context(), bytes.NewReader(data[off:off+n]), int64(n), nil); err != nil {
							t.Fatalf("write %d bytes at %d: %v", n, off, err)
						}
						off += n
					}
					su.mu.Lock()
					su.u.Length = int64(total)
					su.mu.Unlock()
					p, _, err := su.write(t.Context(), bytes.NewReader(nil), 0, nil)
					if err != nil {
						t.Fatalf("empty last write: %v", err)
					}
					if p.Offset != int64(total) {
						t.Fatalf("offset %d after the empty write, want %d", p.Offset, total)
					}
					su.complete(t)
					su.check(t, data)
				})
			}
		})
	}
}

// TestS3CompleteRefusesShort: Complete refuses (ErrIncomplete) when the
// committed parts do not make the upload's length or a tail is still
// outside the parts, and cleans up nothing: the multipart upload and the
// tail stay for the write that finishes the job.
func TestS3CompleteRefusesShort(t *testing.T) { eachS3(t, testS3CompleteRefusesShort) }

func testS3CompleteRefusesShort(t *testing.T, backend testsvc.S3Backend) {
	e := newS3Env(t, backend, S3LayoutDefault)
	data := testData(9, 6<<20+100)
	su := e.create(t, "uploads/short", -1)
	if _, _, err := su.write(t.Context(), bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	st := state(t, su.snapshot())
	if st.TailSize == 0 {
		t.Fatalf("a deferred write of %d bytes left no tail (state %+v)", len(data), st)
	}
	u := su.snapshot()
	u.Length = int64(len(data))
	parts := slices.Clone(su.parts)
	err := e.sink.Complete(t.Context(), u, parts)
	if !errors.Is(err, ErrIncomplete) {
		t.Fatalf("complete with a tail outside the parts: %v, want ErrIncomplete", err)
	}
	if !errors.Is(err, ErrStorage) {
		t.Errorf("ErrIncomplete does not wrap ErrStorage (the client is to retry): %v", err)
	}
	if k := e.keys(t, tailPrefix(u.Key)); len(k) != 1 {
		t.Errorf("tails after a refused complete: %v, want the committed one", k)
	}
	if ids := e.multipartUploads(t, u.Key); len(ids) != 1 {
		t.Errorf("multipart uploads after a refused complete: %v, want 1", ids)
	}
	if _, err := e.client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &e.srv.Bucket, Key: aws.String(u.Key)}); err == nil {
		t.Errorf("a refused complete made the object")
	}

	// Parts alone that miss bytes: refused as well.
	st.Tail, st.TailSize = "", 0
	u.Storage = st.encode()
	if err := e.sink.Complete(t.Context(), u, parts); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("complete with parts of %d bytes for %d: %v, want ErrIncomplete", sumSizes(parts), u.Length, err)
	}

	// The empty write that ends it stores the tail; then it completes.
	su.mu.Lock()
	su.u.Length = int64(len(data))
	su.mu.Unlock()
	if _, _, err := su.write(t.Context(), bytes.NewReader(nil), 0, nil); err != nil {
		t.Fatal(err)
	}
	su.complete(t)
	su.check(t, data)
}

// TestS3VerifyObject: the check after completion compares the object's
// size and full-object CRC32C with what the parts promised.
func TestS3VerifyObject(t *testing.T) { eachS3(t, testS3VerifyObject) }

func testS3VerifyObject(t *testing.T, backend testsvc.S3Backend) {
	e := newS3Env(t, backend, S3LayoutDefault)
	data := testData(11, 6<<20+7)
	su := e.stored(t, "uploads/verify", data)
	parts := slices.Clone(su.parts)
	if err := e.sink.verifyObject(t.Context(), su.u.Key, int64(len(data)), parts); err != nil {
		t.Fatalf("verify of the object as stored: %v", err)
	}
	if err := e.sink.verifyObject(t.Context(), su.u.Key, int64(len(data))+1, parts); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("verify with a size one byte off: %v, want ErrIncomplete", err)
	}
	bad := slices.Clone(parts)
	bad[0].Checksum = aws.ToString(crcHeader(12345))
	if err := e.sink.verifyObject(t.Context(), su.u.Key, int64(len(data)), bad); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("verify with a wrong part checksum: %v, want ErrIncomplete", err)
	}
}

func sumSizes(ps []Part) (n int64) {
	for _, p := range ps {
		n += p.Size
	}
	return n
}
