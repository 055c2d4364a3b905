package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/roughy/ingest/internal/testsvc"
)

// s3Env is an S3 server with a bucket, a sink on it and a plain SDK client
// to look at what the sink stored.
type s3Env struct {
	srv    testsvc.S3Server
	sink   *S3Sink
	client *s3.Client
	pool   *Pool
}

// eachS3 runs test as one subtest per S3 implementation, named by it.
func eachS3(t *testing.T, test func(*testing.T, testsvc.S3Backend)) {
	for _, b := range testsvc.S3Backends {
		t.Run(string(b), func(t *testing.T) { test(t, b) })
	}
}

func newS3Env(t testing.TB, backend testsvc.S3Backend, layout string) *s3Env {
	t.Helper()
	srv := testsvc.StartS3Backend(t, backend)
	// The sink takes credentials from the AWS default chain.
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", srv.Region)
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	pool := NewPool(256 << 20)
	sink, err := NewS3Sink(t.Context(), S3Config{
		Bucket: srv.Bucket, Endpoint: srv.Endpoint, ForcePathStyle: true,
		Layout: layout, PartConcurrency: 3,
	}, pool)
	if err != nil {
		t.Fatal(err)
	}
	client := s3.New(s3.Options{
		Region:       srv.Region,
		BaseEndpoint: aws.String(srv.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
	})
	return &s3Env{srv: srv, sink: sink, client: client, pool: pool}
}

// object returns the stored object's bytes and Content-Type.
func (e *s3Env) object(t testing.TB, key string) ([]byte, string) {
	t.Helper()
	out, err := e.client.GetObject(t.Context(), &s3.GetObjectInput{Bucket: &e.srv.Bucket, Key: &key})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b, aws.ToString(out.ContentType)
}

// keys lists the bucket's object keys under prefix.
func (e *s3Env) keys(t testing.TB, prefix string) []string {
	t.Helper()
	out, err := e.client.ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: &e.srv.Bucket, Prefix: &prefix})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// multipartUploads lists the multipart uploads in progress for key.
func (e *s3Env) multipartUploads(t testing.TB, key string) []string {
	t.Helper()
	out, err := e.client.ListMultipartUploads(t.Context(), &s3.ListMultipartUploadsInput{Bucket: &e.srv.Bucket, Prefix: &key})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, u := range out.Uploads {
		ids = append(ids, aws.ToString(u.UploadId))
	}
	return ids
}

var errS3Conflict = errors.New("test store: offset conflict")

// s3Upload plays the session store for one upload: it reserves part
// numbers and commits with a compare-and-set on the offset.
type s3Upload struct {
	env      *s3Env
	mu       sync.Mutex
	u        Upload
	parts    []Part
	nextPart int32
	// whole makes writes Chunk.Whole (a whole upload into storage not
	// yet created).
	whole bool
}

func (e *s3Env) create(t testing.TB, key string, length int64) *s3Upload {
	t.Helper()
	u := Upload{ID: key, Key: key, Length: length, ContentType: "video/mp4"}
	st, err := e.sink.Create(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	u.Storage = st
	return &s3Upload{env: e, u: u, nextPart: 1}
}

// snapshot returns the committed upload.
func (su *s3Upload) snapshot() Upload {
	su.mu.Lock()
	defer su.mu.Unlock()
	return su.u
}

// reserve reserves the part numbers a write of size bytes from u needs.
func (su *s3Upload) reserve(u Upload, size int64) PartRange {
	n := su.env.sink.PartsFor(u, size)
	su.mu.Lock()
	defer su.mu.Unlock()
	r := PartRange{First: su.nextPart, Count: n}
	su.nextPart += n
	return r
}

// write sends one chunk (size -1: unknown) from the committed offset.
func (su *s3Upload) write(ctx context.Context, body io.Reader, size int64, sum *Checksum) (Progress, PartRange, error) {
	return su.writeFrom(ctx, su.snapshot(), body, size, sum)
}

func (su *s3Upload) writeFrom(ctx context.Context, u Upload, body io.Reader, size int64, sum *Checksum) (Progress, PartRange, error) {
	r := su.reserve(u, size)
	expect := u.Offset
	commit := func(_ context.Context, p Progress) error {
		su.mu.Lock()
		defer su.mu.Unlock()
		if su.u.Offset != expect {
			return errS3Conflict
		}
		su.u.Offset, su.u.HashState = p.Offset, p.HashState
		if p.Storage != nil {
			su.u.Storage = p.Storage
		}
		su.parts = append(su.parts, p.Parts...)
		expect = p.Offset
		return nil
	}
	p, err := New(su.env.sink).Write(ctx, u, Chunk{Body: body, Size: size, Checksum: sum, Parts: r, Commit: commit, Whole: su.whole})
	return p, r, err
}

func (su *s3Upload) complete(t testing.TB) {
	t.Helper()
	su.mu.Lock()
	u, parts := su.u, slices.Clone(su.parts)
	su.mu.Unlock()
	slices.SortFunc(parts, func(a, b Part) int { return int(a.Offset - b.Offset) })
	if err := su.env.sink.Complete(t.Context(), u, parts); err != nil {
		t.Fatalf("complete: %v", err)
	}
}

// stored creates key, writes data to it in one chunk and completes it.
func (e *s3Env) stored(t testing.TB, key string, data []byte) *s3Upload {
	t.Helper()
	su := e.create(t, key, int64(len(data)))
	if _, _, err := su.write(t.Context(), bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	su.complete(t)
	return su
}

// httpGet GETs u without credentials and returns the whole answer.
func httpGet(t testing.TB, u string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read: %v", u, err)
	}
	return resp, b
}

// check completes nothing; it verifies the completed object holds data:
// bytes, SHA-256 of the committed hash state, Content-Type, and that no
// tail or multipart upload is left.
func (su *s3Upload) check(t testing.TB, data []byte) {
	t.Helper()
	got, ctype := su.env.object(t, su.u.Key)
	if !bytes.Equal(got, data) {
		t.Fatalf("object holds %d bytes (first diff at %d), want %d", len(got), firstDiff(got, data), len(data))
	}
	want := sha256.Sum256(data)
	sum, err := SumHex(su.snapshot().HashState)
	if err != nil {
		t.Fatal(err)
	}
	if sum != hex.EncodeToString(want[:]) {
		t.Errorf("committed sha256 %s, want %s", sum, hex.EncodeToString(want[:]))
	}
	if ctype != "video/mp4" {
		t.Errorf("Content-Type %q, want video/mp4", ctype)
	}
	if k := su.env.keys(t, tailPrefix(su.u.Key)); len(k) != 0 {
		t.Errorf("tails left after complete: %v", k)
	}
	if ids := su.env.multipartUploads(t, su.u.Key); len(ids) != 0 {
		t.Errorf("multipart uploads left after complete: %v", ids)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func testData(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1})
	r.Read(b)
	return b
}

func state(t testing.TB, u Upload) s3State {
	t.Helper()
	st, err := decodeS3State(u.Storage)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestS3UploadOddChunks(t *testing.T) { eachS3(t, testS3UploadOddChunks) }

func testS3UploadOddChunks(t *testing.T, backend testsvc.S3Backend) {
	for _, layout := range []string{S3LayoutDefault, S3LayoutEqual} {
		t.Run(layout, func(t *testing.T) {
			e := newS3Env(t, backend, layout)
			// 5 MiB+1, a 1 MiB tail, 7 MiB on top of it, a chunked body
			// (size unknown) of 3 MiB, and a small last chunk.
			sizes := []int64{5*tMiB + 1, tMiB, 7 * tMiB, 3 * tMiB, 1000}
			var length int64
			for _, s := range sizes {
				length += s
			}
			data := testData(1, int(length))
			su := e.create(t, "uploads/odd-"+layout, length)
			var off int64
			for i, size := range sizes {
				declared := size
				if i == 3 {
					declared = -1
				}
				p, r, err := su.write(t.Context(), bytes.NewReader(data[off:off+size]), declared, nil)
				if err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
				off += size
				if p.Offset != off {
					t.Fatalf("write %d: offset %d, want %d", i, p.Offset, off)
				}
				st := state(t, su.snapshot())
				t.Logf("write %d (%d bytes): parts reserved %d, tail %d bytes", i, size, r.Count, st.TailSize)
			}
			parts := su.parts
			for i, p := range parts {
				if i > 0 && p.Number <= parts[i-1].Number {
					t.Errorf("part numbers not increasing: %d after %d", p.Number, parts[i-1].Number)
				}
				if i < len(parts)-1 && p.Size < s3MinPartSize {
					t.Errorf("part %d holds %d bytes, under 5 MiB", p.Number, p.Size)
				}
				if layout == S3LayoutEqual && i < len(parts)-1 && p.Size != state(t, su.u).PartSize {
					t.Errorf("equal layout: part %d holds %d bytes", p.Number, p.Size)
				}
			}
			su.complete(t)
			su.check(t, data)
			// Complete is idempotent.
			su.complete(t)
		})
	}
}

// dropReader yields r's bytes, then err instead of EOF.
type dropReader struct {
	r   io.Reader
	err error
}

func (d *dropReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err == io.EOF {
		err = d.err
	}
	return n, err
}

var errClientGone = errors.New("client went away")

func TestS3ResumeAfterReadError(t *testing.T) { eachS3(t, testS3ResumeAfterReadError) }

func testS3ResumeAfterReadError(t *testing.T, backend testsvc.S3Backend) {
	e := newS3Env(t, backend, S3LayoutDefault)
	const length = 40 * tMiB
	data := testData(2, length)
	su := e.create(t, "uploads/resume", length)

	// The client drops 18 MiB + 5 bytes into a 40 MiB PATCH: one 16 MiB
	// part (s3TargetPartSize), and 2 MiB + 5 bytes that must survive as a
	// committed tail.
	cut := s3TargetPartSize + 2*tMiB + 5
	p, _, err := su.write(t.Context(), &dropReader{bytes.NewReader(data[:cut]), errClientGone}, length, nil)
	if !errors.Is(err, errClientGone) {
		t.Fatalf("write: err %v, want the reader's error", err)
	}
	if p.Offset != int64(cut) || su.snapshot().Offset != int64(cut) {
		t.Fatalf("offset after drop: returned %d, committed %d, want %d", p.Offset, su.snapshot().Offset, cut)
	}
	st := state(t, su.snapshot())
	if st.Tail == "" || st.TailSize != int64(cut-s3TargetPartSize) {
		t.Fatalf("tail after drop: %q of %d bytes, want %d bytes", st.Tail, st.TailSize, cut-s3TargetPartSize)
	}
	if len(su.parts) != 1 || su.parts[0].Size != s3TargetPartSize {
		t.Fatalf("parts after drop: %+v, want one of 16 MiB", su.parts)
	}

	// A second drop inside the tail's part: the new tail replaces the old.
	cut2 := cut + 100
	if _, _, err := su.write(t.Context(), &dropReader{bytes.NewReader(data[cut:cut2]), errClientGone}, int64(length-cut), nil); !errors.Is(err, errClientGone) {
		t.Fatalf("second write: err %v", err)
	}
	st2 := state(t, su.snapshot())
	if st2.TailSize != st.TailSize+100 || st2.Tail == st.Tail || !slices.Contains(st2.Stale, st.Tail) {
		t.Fatalf("tail after second drop: %+v, want %d bytes, old tail stale", st2, st.TailSize+100)
	}
	if k := e.keys(t, st.Tail); len(k) != 1 {
		t.Fatalf("old tail deleted before the next write: %v", k)
	}

	// The client resumes from HEAD's offset.
	off := su.snapshot().Offset
	if _, _, err := su.write(t.Context(), bytes.NewReader(data[off:]), length-off, nil); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if got := su.snapshot().Offset; got != length {
		t.Fatalf("offset %d, want %d", got, length)
	}
	su.complete(t)
	su.check(t, data)
}

func TestS3ChecksumMismatch(t *testing.T) { eachS3(t, testS3ChecksumMismatch) }

func testS3ChecksumMismatch(t *testing.T, backend testsvc.S3Backend) {
	e := newS3Env(t, backend, S3LayoutDefault)
	const length = 12 * tMiB
	data := testData(3, length)
	su := e.create(t, "uploads/checksum", length)
	if _, _, err := su.write(t.Context(), bytes.NewReader(data[:tMiB]), tMiB, nil); err != nil {
		t.Fatal(err)
	}
	before := su.snapshot()
	tail := state(t, before).Tail
	if tail == "" {
		t.Fatal("no tail after a 1 MiB write")
	}

	chunk := data[tMiB : 7*tMiB]
	good := sha256.Sum256(chunk)
	bad := good
	bad[0] ^= 1
	_, _, err := su.write(t.Context(), bytes.NewReader(chunk), int64(len(chunk)), &Checksum{Algorithm: "sha256", Sum: bad[:]})
	if !errors.Is(err, ErrChecksumMismatch) {
		t.Fatalf("write with a bad checksum: err %v, want ErrChecksumMismatch", err)
	}
	after := su.snapshot()
	if after.Offset != before.Offset || !bytes.Equal(after.Storage, before.Storage) || !bytes.Equal(after.HashState, before.HashState) || len(su.parts) != 0 {
		t.Fatalf("state moved on a checksum mismatch: offset %d→%d, parts %d", before.Offset, after.Offset, len(su.parts))
	}
	if k := e.keys(t, tail); len(k) != 1 {
		t.Fatalf("committed tail %s gone after a checksum mismatch: %v", tail, k)
	}

	if _, _, err := su.write(t.Context(), bytes.NewReader(chunk), int64(len(chunk)), &Checksum{Algorithm: "sha256", Sum: good[:]}); err != nil {
		t.Fatalf("retry with the right checksum: %v", err)
	}
	if got := su.snapshot().Offset; got != 7*tMiB {
		t.Fatalf("offset %d after retry, want %d", got, 7*tMiB)
	}
	off := su.snapshot().Offset
	if _, _, err := su.write(t.Context(), bytes.NewReader(data[off:]), length-off, nil); err != nil {
		t.Fatal(err)
	}
	su.complete(t)
	su.check(t, data)
}

func TestS3RacingWriters(t *testing.T) { eachS3(t, testS3RacingWriters) }

func testS3RacingWriters(t *testing.T, backend testsvc.S3Backend) {
	e := newS3Env(t, backend, S3LayoutEqual)
	const length = 12 * tMiB
	// Two clients send different bytes for the same offsets; whichever
	// commits first wins, and the object holds its bytes only.
	a, b := testData(4, length), testData(5, length)
	su := e.create(t, "uploads/race", length)
	start := su.snapshot()
	first := 11 * tMiB // two parts and a 1 MiB tail in the equal layout
	var wg sync.WaitGroup
	errs := make([]error, 2)
	ranges := make([]PartRange, 2)
	for i, d := range [][]byte{a, b} {
		wg.Go(func() {
			_, ranges[i], errs[i] = su.writeFrom(t.Context(), start, bytes.NewReader(d[:first]), int64(first), nil)
		})
	}
	wg.Wait()
	if ranges[0].First+ranges[0].Count > ranges[1].First && ranges[1].First+ranges[1].Count > ranges[0].First {
		t.Fatalf("part ranges overlap: %+v", ranges)
	}
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatal("both racing writers succeeded")
			}
			winner = i
		case !errors.Is(err, errS3Conflict):
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no racing writer succeeded")
	}
	data := [][]byte{a, b}[winner]
	r := ranges[winner]
	for _, p := range su.parts {
		if p.Number < r.First || p.Number >= r.First+r.Count {
			t.Fatalf("committed part %d is not the winner's (range %+v)", p.Number, r)
		}
	}
	t.Logf("writer %d won with parts %+v", winner, r)
	if _, _, err := su.write(t.Context(), bytes.NewReader(data[first:]), length-int64(first), nil); err != nil {
		t.Fatal(err)
	}
	su.complete(t)
	su.check(t, data)
}

func TestS3Abort(t *testing.T) { eachS3(t, testS3Abort) }

func testS3Abort(t *testing.T, backend testsvc.S3Backend) {
	e := newS3Env(t, backend, S3LayoutEqual)
	const length = 20 * tMiB
	data := testData(6, length)
	su := e.create(t, "uploads/abort", length)
	if _, _, err := su.write(t.Context(), bytes.NewReader(data[:6*tMiB]), 6*tMiB, nil); err != nil {
		t.Fatal(err)
	}
	if len(e.multipartUploads(t, su.u.Key)) != 1 || len(e.keys(t, tailPrefix(su.u.Key))) != 1 {
		t.Fatalf("before abort: uploads %v, tails %v; want one of each", e.multipartUploads(t, su.u.Key), e.keys(t, tailPrefix(su.u.Key)))
	}
	for range 2 { // idempotent
		if err := e.sink.Abort(t.Context(), su.snapshot()); err != nil {
			t.Fatalf("abort: %v", err)
		}
		if ids := e.multipartUploads(t, su.u.Key); len(ids) != 0 {
			t.Fatalf("multipart uploads left after abort: %v", ids)
		}
		if k := e.keys(t, su.u.Key); len(k) != 0 {
			t.Fatalf("objects left after abort: %v", k)
		}
	}
	// A write to an aborted upload reports ErrNoSuchUpload.
	_, _, err := su.write(t.Context(), bytes.NewReader(data[6*tMiB:12*tMiB]), 6*tMiB, nil)
	if !errors.Is(err, ErrNoSuchUpload) {
		t.Fatalf("write after abort: err %v, want ErrNoSuchUpload", err)
	}
}

// TestS3AbortCompleted: aborting a completed upload (DELETE of a ready
// asset, expiry) deletes its object, so a download URL presigned before
// no longer serves it.
func TestS3AbortCompleted(t *testing.T) { eachS3(t, testS3AbortCompleted) }

func testS3AbortCompleted(t *testing.T, backend testsvc.S3Backend) {
	e := newS3Env(t, backend, S3LayoutDefault)
	su := e.stored(t, "uploads/abort-completed", testData(7, 3*tMiB))
	u, err := e.sink.URL(t.Context(), su.u.Key, 0)
	if err != nil {
		t.Fatal(err)
	}
	if resp, _ := httpGet(t, u); resp.StatusCode != http.StatusOK {
		t.Fatalf("presigned URL before abort: %s, want 200", resp.Status)
	}
	for range 2 { // idempotent
		if err := e.sink.Abort(t.Context(), su.snapshot()); err != nil {
			t.Fatalf("abort: %v", err)
		}
	}
	if k := e.keys(t, su.u.Key); len(k) != 0 {
		t.Errorf("objects left after aborting a completed upload: %v", k)
	}
	if resp, _ := httpGet(t, u); resp.StatusCode == http.StatusOK {
		t.Errorf("presigned URL issued before the abort: %s, want it to fail", resp.Status)
	}
}

func TestS3Concat(t *testing.T) { eachS3(t, testS3Concat) }

func testS3Concat(t *testing.T, backend testsvc.S3Backend) {
	e := newS3Env(t, backend, S3LayoutDefault)
	// 6 MiB is copied server-side; the 1 MiB one is read through and
	// topped up to 5 MiB from the next one, whose other 5 MiB + 3 bytes
	// are copied, like the small last one.
	sizes := []int{6 * tMiB, tMiB, 9*tMiB + 3, 1000}
	var all []byte
	var srcs []Upload
	for i, size := range sizes {
		data := testData(uint64(10+i), size)
		su := e.create(t, "uploads/part-"+string(rune('a'+i)), int64(size))
		if _, _, err := su.write(t.Context(), bytes.NewReader(data), int64(size), nil); err != nil {
			t.Fatal(err)
		}
		su.complete(t)
		srcs = append(srcs, su.snapshot())
		all = append(all, data...)
	}
	dst := e.create(t, "uploads/final", int64(len(all)))
	_, parts, err := e.sink.Concat(t.Context(), dst.snapshot(), srcs)
	if err != nil {
		t.Fatal(err)
	}
	got, ctype := e.object(t, dst.u.Key)
	if !bytes.Equal(got, all) {
		t.Fatalf("concatenation holds %d bytes (first diff at %d), want %d", len(got), firstDiff(got, all), len(all))
	}
	if ctype != "video/mp4" {
		t.Errorf("Content-Type %q", ctype)
	}
	var sum int64
	for _, p := range parts {
		sum += p.Size
	}
	if len(parts) != 4 || sum != int64(len(all)) {
		t.Errorf("parts %+v: want 4 holding %d bytes", parts, len(all))
	}
	if ids := e.multipartUploads(t, dst.u.Key); len(ids) != 0 {
		t.Errorf("multipart uploads left: %v", ids)
	}
}

func TestS3URLAndOpen(t *testing.T) { eachS3(t, testS3URLAndOpen) }

func testS3URLAndOpen(t *testing.T, backend testsvc.S3Backend) {
	e := newS3Env(t, backend, S3LayoutDefault)
	data := testData(7, 3*tMiB+17)
	su := e.stored(t, "uploads/url", data)

	u, err := e.sink.URL(t.Context(), su.u.Key, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(u, "X-Amz-Signature=") {
		t.Fatalf("URL %s is not presigned", u)
	}
	resp, got := httpGet(t, u)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("GET presigned: %s, %d bytes, want 200 with %d bytes", resp.Status, len(got), len(data))
	}
	// Tampering breaks the signature, where the server checks one.
	resp, _ = httpGet(t, strings.Replace(u, "X-Amz-Signature=", "X-Amz-Signature=0", 1))
	switch {
	case !e.srv.ChecksSignatures:
		t.Logf("tampered URL: %s (%s checks no signature)", resp.Status, e.srv.Backend)
	case resp.StatusCode != http.StatusForbidden:
		t.Errorf("tampered URL: %s, want 403", resp.Status)
	}

	obj, err := e.sink.Open(t.Context(), su.u.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if obj.Size() != int64(len(data)) {
		t.Fatalf("Size %d, want %d", obj.Size(), len(data))
	}
	buf := make([]byte, 100)
	if n, err := obj.ReadAt(buf, tMiB); err != nil || !bytes.Equal(buf[:n], data[tMiB:tMiB+100]) {
		t.Fatalf("ReadAt: %d, %v", n, err)
	}
	if n, err := obj.ReadAt(buf, int64(len(data)-10)); err != io.EOF || n != 10 || !bytes.Equal(buf[:n], data[len(data)-10:]) {
		t.Fatalf("ReadAt at the end: %d, %v; want 10, EOF", n, err)
	}
	if _, err := e.sink.Open(t.Context(), "uploads/missing"); !errors.Is(err, ErrNoSuchUpload) {
		t.Fatalf("Open of a missing object: %v, want ErrNoSuchUpload", err)
	}
	if err := e.sink.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// TestS3PartNumbersScaledDown is the 10,000-part check for real: 5 MiB + 1
// byte PATCHes over a 40 MiB upload, with drops, must use no more part
// numbers than the plan allows (ceil(length/partSize) plus what dropped
// writes reserved), and the object must be whole.
func TestS3PartNumbersScaledDown(t *testing.T) { eachS3(t, testS3PartNumbersScaledDown) }

func testS3PartNumbersScaledDown(t *testing.T, backend testsvc.S3Backend) {
	for _, layout := range []string{S3LayoutDefault, S3LayoutEqual} {
		t.Run(layout, func(t *testing.T) {
			e := newS3Env(t, backend, layout)
			const length = 40 * tMiB
			data := testData(8, length)
			su := e.create(t, "uploads/scaled-"+layout, length)
			plan := &planUpload{layout: layout, length: length, partSize: s3PartSize(length)}
			chunk := int64(5*tMiB + 1)
			for i := 1; su.snapshot().Offset < length; i++ {
				off := su.snapshot().Offset
				size := min(chunk, length-off)
				got := size
				var body io.Reader = bytes.NewReader(data[off : off+size])
				if i%3 == 0 {
					got = size / 2
					body = &dropReader{bytes.NewReader(data[off : off+got]), errClientGone}
				}
				plan.write(t, size, got)
				if _, _, err := su.write(t.Context(), body, size, nil); err != nil && !errors.Is(err, errClientGone) {
					t.Fatalf("write %d: %v", i, err)
				}
				if su.snapshot().Offset != plan.offset {
					t.Fatalf("write %d: offset %d, the plan says %d", i, su.snapshot().Offset, plan.offset)
				}
			}
			used := int64(su.nextPart - 1)
			if used != plan.reserved || int64(len(su.parts)) != plan.used {
				t.Fatalf("reserved %d numbers and committed %d parts; the plan says %d and %d", used, len(su.parts), plan.reserved, plan.used)
			}
			if maxParts := int64((length + plan.partSize - 1) / plan.partSize); int64(len(su.parts)) > maxParts {
				t.Fatalf("%d parts, more than %d", len(su.parts), maxParts)
			}
			t.Logf("%s: %d parts, %d numbers reserved", layout, len(su.parts), used)
			su.complete(t)
			su.check(t, data)
		})
	}
}

// TestS3ObjectCRC32C: uploads declare CRC32C (full object) at creation, so
// S3 checks each part against it and stores the object's CRC32C, which
// must be the CRC32C of the source. An upload whose state predates the
// declaration (a multipart upload created without an algorithm) still
// completes without part checksums.
func TestS3ObjectCRC32C(t *testing.T) { eachS3(t, testS3ObjectCRC32C) }

func testS3ObjectCRC32C(t *testing.T, backend testsvc.S3Backend) {
	e := newS3Env(t, backend, S3LayoutDefault)
	data := testData(32, 2*s3TargetPartSize+3<<20+17)
	cut := s3TargetPartSize + 1<<20 + 5 // a PATCH ending mid-part: a tail
	want := aws.ToString(crcHeader(crc32.Checksum(data, castagnoli)))

	su := e.create(t, "uploads/crc", int64(len(data)))
	for _, part := range [][]byte{data[:cut], data[cut:]} {
		if _, _, err := su.write(t.Context(), bytes.NewReader(part), int64(len(part)), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range su.parts {
		if p.Checksum == "" {
			t.Fatalf("part %d committed without its checksum", p.Number)
		}
	}
	su.complete(t)
	su.check(t, data)
	head, err := e.client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &e.srv.Bucket, Key: aws.String(su.u.Key), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		t.Fatal(err)
	}
	if got := aws.ToString(head.ChecksumCRC32C); got != want {
		t.Fatalf("object CRC32C %q (type %s), want %q", got, head.ChecksumType, want)
	}

	// An upload created before the declaration.
	old := e.create(t, "uploads/crc-old", int64(len(data)))
	st, err := decodeS3State(old.u.Storage)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.sink.Abort(t.Context(), old.u); err != nil {
		t.Fatal(err)
	}
	out, err := e.client.CreateMultipartUpload(t.Context(), &s3.CreateMultipartUploadInput{Bucket: &e.srv.Bucket, Key: aws.String(old.u.Key), ContentType: aws.String("video/mp4")})
	if err != nil {
		t.Fatal(err)
	}
	st.UploadID, st.Checksum = aws.ToString(out.UploadId), ""
	old.u.Storage = st.encode()
	if _, _, err := old.write(t.Context(), bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	old.complete(t)
	old.check(t, data)
}
