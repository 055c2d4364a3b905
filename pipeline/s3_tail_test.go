package pipeline

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestS3LostTailFallsBack: a committed state that names a tail storage no
// longer has (a session store rolled back past the write that deleted it)
// makes the next write fail with a TailLostError whose fallback is the
// offset before the tail, with the hash state there and a storage state
// without the tail. Committed, the fallback lets the upload resume from
// there and complete with the right bytes; it used to fail on every write
// (ErrNoSuchUpload) for good.
func TestS3LostTailFallsBack(t *testing.T) { eachS3(t, testS3LostTailFallsBack) }

func testS3LostTailFallsBack(t *testing.T, backend testsvc.S3Backend) {
	for _, layout := range []string{S3LayoutDefault, S3LayoutEqual} {
		t.Run(layout, func(t *testing.T) {
			e := newS3Env(t, backend, layout)
			for i, writes := range [][]int{{3<<20 + 7}, {12<<20 + 5, 3<<20 + 7}} {
				lostTail(t, e, fmt.Sprintf("uploads/lost-%s-%d", layout, i), writes)
			}
		})
	}
}

// lostTail writes the deferred upload key in writes (the last leaving a
// tail), deletes the tail object, and checks the fall-back and resume.
func lostTail(t *testing.T, e *s3Env, key string, writes []int) {
	data := testData(21, 20<<20+333)
	su := e.create(t, key, -1)
	for _, n := range writes {
		off := int(su.snapshot().Offset)
		if _, _, err := su.write(t.Context(), bytes.NewReader(data[off:off+n]), int64(n), nil); err != nil {
			t.Fatal(err)
		}
	}
	st := state(t, su.snapshot())
	if st.Tail == "" || (st.TailHash == nil) != (su.snapshot().Offset == st.TailSize) {
		t.Fatalf("after deferred writes %v: no tail, or no hash where it starts: %+v", writes, st)
	}
	if _, err := e.client.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: &e.srv.Bucket, Key: aws.String(st.Tail)}); err != nil {
		t.Fatal(err)
	}
	u := su.snapshot()
	_, _, err := su.write(t.Context(), bytes.NewReader(data[u.Offset:]), int64(len(data))-u.Offset, nil)
	tl, ok := errors.AsType[*TailLostError](err)
	if !ok || !errors.Is(err, ErrStorage) {
		t.Fatalf("write after the tail was deleted: %v, want a *TailLostError (ErrStorage)", err)
	}
	if want := u.Offset - st.TailSize; tl.Fallback.Offset != want {
		t.Fatalf("fallback offset %d, want %d", tl.Fallback.Offset, want)
	}
	if ok, err := sumIs(tl.Fallback.HashState, sha(data[:tl.Fallback.Offset])); err != nil || !ok {
		t.Fatalf("fallback hash state is not the SHA-256 of the first %d bytes (%v)", tl.Fallback.Offset, err)
	}
	fb, err := decodeS3State(tl.Fallback.Storage)
	if err != nil || fb.Tail != "" || fb.TailSize != 0 || fb.UploadID != st.UploadID {
		t.Fatalf("fallback storage %+v (%v), want the upload's without a tail", fb, err)
	}
	// The caller commits the fallback; the client resumes there.
	su.mu.Lock()
	su.u.Offset, su.u.HashState, su.u.Storage = tl.Fallback.Offset, tl.Fallback.HashState, tl.Fallback.Storage
	su.u.Length = int64(len(data))
	su.mu.Unlock()
	off := tl.Fallback.Offset
	if _, _, err := su.write(t.Context(), bytes.NewReader(data[off:]), int64(len(data))-off, nil); err != nil {
		t.Fatalf("resume from the fallback: %v", err)
	}
	su.complete(t)
	su.check(t, data)
}

func sha(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
