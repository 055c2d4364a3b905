package pipeline

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeSession stands in for the session store's commit: a compare-and-set
// that only moves the offset forward, recording every applied Progress.
type fakeSession struct {
	mu      sync.Mutex
	offset  int64
	state   []byte
	commits []Progress
	// fail, when set, is asked before each commit; its error is returned
	// and the commit not applied.
	fail func(calls int, p Progress) error
	// calls counts commit calls, failed ones too.
	calls int
}

var errConflict = errors.New("test: offset conflict")

func (s *fakeSession) commit(_ context.Context, p Progress) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail != nil {
		if err := s.fail(s.calls, p); err != nil {
			return err
		}
	}
	if p.Offset <= s.offset {
		return fmt.Errorf("commit to %d, stored %d: %w", p.Offset, s.offset, errConflict)
	}
	s.offset, s.state = p.Offset, p.HashState
	s.commits = append(s.commits, p)
	return nil
}

func (s *fakeSession) upload(key string, length int64) Upload {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Upload{ID: filepath.Base(key), Key: key, Length: length, Offset: s.offset, HashState: s.state}
}

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0] = byte(seed)
	rand.NewChaCha8(s).Read(b)
	return b
}

// chunkedReader returns at most max bytes per Read, like a network body.
type chunkedReader struct {
	r   io.Reader
	max int
	n   int64 // bytes returned so far
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if len(p) > c.max {
		p = p[:c.max]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// failingReader yields data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

// commitEvery16MiB makes LocalSink.Write commit every 16 MiB of a body
// until the test ends.
func commitEvery16MiB(t *testing.T) {
	old := localCommitEvery
	localCommitEvery = 16 << 20
	t.Cleanup(func() { localCommitEvery = old })
}

func newTestSink(t *testing.T) *LocalSink {
	t.Helper()
	s, err := NewLocalSink(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func createUpload(t *testing.T, s *LocalSink, sess *fakeSession, key string, length int64) Upload {
	t.Helper()
	u := sess.upload(key, length)
	if _, err := s.Create(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	return u
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// checkStored checks that the file holds exactly want.
func checkStored(t *testing.T, s *LocalSink, key string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(s.Dir(), filepath.FromSlash(key)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("stored %d bytes (sha256 %s), want %d bytes (sha256 %s)",
			len(got), sha256Hex(got), len(want), sha256Hex(want))
	}
}

// checkCommits checks every commit's hash state against data's prefix and
// that offsets only grow.
func checkCommits(t *testing.T, data []byte, commits []Progress) {
	t.Helper()
	prev := int64(-1)
	for i, c := range commits {
		if c.Offset <= prev || c.Offset > int64(len(data)) {
			t.Fatalf("commit %d at offset %d after %d (data %d bytes)", i, c.Offset, prev, len(data))
		}
		got, err := SumHex(c.HashState)
		if err != nil {
			t.Fatal(err)
		}
		if want := sha256Hex(data[:c.Offset]); got != want {
			t.Fatalf("commit %d at %d: hash state sums to %s, want %s", i, c.Offset, got, want)
		}
		prev = c.Offset
	}
}

func TestLocalWriteBytesAndSHA256(t *testing.T) {
	commitEvery16MiB(t)
	s := newTestSink(t)
	sess := &fakeSession{}
	data := randomBytes(1, 40<<20+123)
	u := createUpload(t, s, sess, "uploads/one", int64(len(data)))

	body := &chunkedReader{r: bytes.NewReader(data), max: 64 << 10}
	got, err := New(s).Write(t.Context(), u, Chunk{Body: body, Size: int64(len(data)), Commit: sess.commit})
	if err != nil {
		t.Fatal(err)
	}
	if got.Offset != int64(len(data)) {
		t.Fatalf("offset %d, want %d", got.Offset, len(data))
	}
	// 16 MiB, 32 MiB, then the end.
	if n := len(sess.commits); n != 3 {
		t.Fatalf("%d commits, want 3 (every 16 MiB and at the end)", n)
	}
	checkCommits(t, data, sess.commits)
	sum, err := SumHex(got.HashState)
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256Hex(data); sum != want {
		t.Fatalf("sha256 %s, want %s", sum, want)
	}
	u.Offset = got.Offset
	if err := s.Complete(t.Context(), u, nil); err != nil {
		t.Fatal(err)
	}
	checkStored(t, s, u.Key, data)

	obj, err := s.Open(t.Context(), u.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if obj.Size() != int64(len(data)) || obj.Path() != filepath.Join(s.Dir(), "uploads", "one") {
		t.Fatalf("object size %d path %q, want %d and the file", obj.Size(), obj.Path(), len(data))
	}
	tail := make([]byte, 1000)
	if _, err := obj.ReadAt(tail, int64(len(data)-1000)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tail, data[len(data)-1000:]) {
		t.Fatal("ReadAt returned other bytes than written")
	}
	if url, err := s.URL(t.Context(), u.Key, time.Minute); url != "" || err != nil {
		t.Fatalf("URL = %q, %v; want \"\", nil", url, err)
	}
}

func TestLocalResumeAcrossWrites(t *testing.T) {
	s := newTestSink(t)
	sess := &fakeSession{}
	data := randomBytes(2, 20<<20+7)
	u := createUpload(t, s, sess, "uploads/resume", int64(len(data)))
	p := New(s)

	// Three PATCHes of uneven sizes; each starts from the session's state.
	cuts := []int{0, 5<<20 + 3, 17<<20 + 1, len(data)}
	for i := range len(cuts) - 1 {
		u = sess.upload(u.Key, u.Length)
		if u.Offset != int64(cuts[i]) {
			t.Fatalf("PATCH %d starts at %d, want %d", i, u.Offset, cuts[i])
		}
		part := data[cuts[i]:cuts[i+1]]
		got, err := p.Write(t.Context(), u, Chunk{Body: bytes.NewReader(part), Size: int64(len(part)), Commit: sess.commit})
		if err != nil {
			t.Fatalf("PATCH %d: %v", i, err)
		}
		if got.Offset != int64(cuts[i+1]) {
			t.Fatalf("PATCH %d: offset %d, want %d", i, got.Offset, cuts[i+1])
		}
	}
	checkCommits(t, data, sess.commits)
	if sum, _ := SumHex(sess.state); sum != sha256Hex(data) {
		t.Fatalf("resumed sha256 %s, want %s", sum, sha256Hex(data))
	}
	checkStored(t, s, u.Key, data)
}

// TestLocalUnalignedWrites stores PATCHes that start and end anywhere
// relative to the 4 KiB blocks of direct I/O (one byte, a block minus or
// plus one, a buffer plus a few), with short network-like reads and a
// commit within bodies, once with direct I/O and once through the page
// cache only; the file and the resumed SHA-256 must equal the source.
func TestLocalUnalignedWrites(t *testing.T) {
	commitEvery16MiB(t)
	sizes := []int{
		1, directAlign - 1, // to an aligned offset
		2*directAlign + 1,  // aligned start: direct, then a 1-byte tail
		3*directAlign + 10, // head, direct middle, tail
		2, directAlign + 1, // within and across one block: no direct part
		localBufSize + 3, 3*localBufSize - 5, 17 << 20,
		4093, directAlign, 5<<20 + 1, 700_001,
	}
	total := 0
	for _, n := range sizes {
		total += n
	}
	data := randomBytes(21, total)
	for _, mode := range []struct{ direct, inline bool }{{true, false}, {false, false}, {true, true}, {false, true}} {
		direct := mode.direct
		t.Run(fmt.Sprintf("direct=%v,inline=%v", direct, mode.inline), func(t *testing.T) {
			old, oldInline := directIO, hashInline
			directIO = direct
			hashInline = func(int) bool { return mode.inline }
			t.Cleanup(func() { directIO, hashInline = old, oldInline })
			s := newTestSink(t)
			sess := &fakeSession{}
			u := createUpload(t, s, sess, "uploads/unaligned", int64(total))
			p := New(s)
			off := 0
			for i, n := range sizes {
				u = sess.upload(u.Key, u.Length)
				body := &chunkedReader{r: bytes.NewReader(data[off : off+n]), max: 100_003}
				got, err := p.Write(t.Context(), u, Chunk{Body: body, Size: int64(n), Commit: sess.commit})
				if err != nil {
					t.Fatalf("PATCH %d (%d bytes at %d): %v", i, n, off, err)
				}
				off += n
				if got.Offset != int64(off) {
					t.Fatalf("PATCH %d: offset %d, want %d", i, got.Offset, off)
				}
			}
			if direct && s.noDirect.Load() {
				t.Logf("the file system refused O_DIRECT; only the fallback ran")
			}
			if n := s.inlined.Load(); (n == int64(len(sizes))) != mode.inline || (n == 0) == mode.inline {
				t.Fatalf("%d of %d Writes hashed inline, inline=%v", n, len(sizes), mode.inline)
			}
			checkCommits(t, data, sess.commits)
			if sum, _ := SumHex(sess.state); sum != sha256Hex(data) {
				t.Fatalf("resumed sha256 %s, want %s", sum, sha256Hex(data))
			}
			checkStored(t, s, u.Key, data)
		})
	}
}

// TestLocalDirectRefused: a file system that opens files O_DIRECT but
// refuses the writes (EINVAL) gets the same bytes through the page cache;
// the sink then stops trying direct I/O.
func TestLocalDirectRefused(t *testing.T) {
	var direct atomic.Int64
	old := directWriteAt
	directWriteAt = func(*os.File, []byte, int64) (int, error) {
		direct.Add(1)
		return 0, syscall.EINVAL
	}
	t.Cleanup(func() { directWriteAt = old })
	s := newTestSink(t)
	sess := &fakeSession{}
	data := randomBytes(22, 3<<20+100)
	u := createUpload(t, s, sess, "uploads/refused", int64(len(data)))
	p := New(s)
	for i, cut := range [][2]int{{0, 2<<20 + 7}, {2<<20 + 7, len(data)}} {
		u = sess.upload(u.Key, u.Length)
		part := data[cut[0]:cut[1]]
		if _, err := p.Write(t.Context(), u, Chunk{Body: bytes.NewReader(part), Size: int64(len(part)), Commit: sess.commit}); err != nil {
			t.Fatalf("PATCH %d: %v", i, err)
		}
		if i == 0 && (direct.Load() != 1 || !s.noDirect.Load()) {
			t.Fatalf("after the refused write: %d direct writes, noDirect %v; want 1, true", direct.Load(), s.noDirect.Load())
		}
	}
	if direct.Load() != 1 {
		t.Errorf("%d direct writes in all, want 1: the sink kept trying", direct.Load())
	}
	checkCommits(t, data, sess.commits)
	checkStored(t, s, u.Key, data)
}

func TestLocalChecksum(t *testing.T) {
	data := randomBytes(3, 3<<20+5)
	sums := map[string][]byte{}
	s256 := sha256.Sum256(data)
	sums["sha256"] = s256[:]
	s1 := sha1.Sum(data)
	sums["sha1"] = s1[:]
	m5 := md5.Sum(data)
	sums["md5"] = m5[:]

	for _, alg := range []string{"sha256", "sha1", "md5"} {
		t.Run(alg+"/match", func(t *testing.T) {
			s := newTestSink(t)
			sess := &fakeSession{}
			u := createUpload(t, s, sess, "uploads/c", int64(len(data)))
			got, err := New(s).Write(t.Context(), u, Chunk{
				Body: bytes.NewReader(data), Size: int64(len(data)),
				Checksum: &Checksum{Algorithm: alg, Sum: sums[alg]}, Commit: sess.commit,
			})
			if err != nil {
				t.Fatal(err)
			}
			if got.Offset != int64(len(data)) || sess.offset != int64(len(data)) {
				t.Fatalf("offset %d, session %d, want %d", got.Offset, sess.offset, len(data))
			}
			if sess.calls != 1 {
				t.Fatalf("%d commits, want 1 (held until verified)", sess.calls)
			}
			checkCommits(t, data, sess.commits)
			checkStored(t, s, u.Key, data)
		})
		t.Run(alg+"/mismatch", func(t *testing.T) {
			s := newTestSink(t)
			sess := &fakeSession{}
			head := randomBytes(4, 1<<20)
			u := createUpload(t, s, sess, "uploads/c", int64(len(head)+len(data)))
			if _, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(head), Size: int64(len(head)), Commit: sess.commit}); err != nil {
				t.Fatal(err)
			}
			u = sess.upload(u.Key, u.Length)
			calls := sess.calls

			bad := bytes.Clone(sums[alg])
			bad[0] ^= 1
			got, err := New(s).Write(t.Context(), u, Chunk{
				Body: bytes.NewReader(data), Size: int64(len(data)),
				Checksum: &Checksum{Algorithm: alg, Sum: bad}, Commit: sess.commit,
			})
			if !errors.Is(err, ErrChecksumMismatch) {
				t.Fatalf("err %v, want ErrChecksumMismatch", err)
			}
			if sess.calls != calls {
				t.Fatalf("commit called %d times on a mismatch", sess.calls-calls)
			}
			if got.Offset != u.Offset || sess.offset != int64(len(head)) {
				t.Fatalf("offset %d, session %d after mismatch; want both %d", got.Offset, sess.offset, len(head))
			}

			// The client sends the chunk again, right this time: the bytes
			// the rejected write left behind are replaced.
			fixed := bytes.Clone(data)
			fixed[len(fixed)/2] ^= 0xff // other bytes than the rejected ones
			h, _ := newHash(alg)
			h.Write(fixed)
			if _, err := New(s).Write(t.Context(), u, Chunk{
				Body: bytes.NewReader(fixed[:len(fixed)-10]), Size: int64(len(fixed) - 10), Commit: sess.commit,
			}); err != nil {
				t.Fatal(err)
			}
			u = sess.upload(u.Key, u.Length)
			if _, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(fixed[len(fixed)-10:]), Size: 10, Commit: sess.commit}); err != nil {
				t.Fatal(err)
			}
			all := append(bytes.Clone(head), fixed...)
			checkCommits(t, all, sess.commits)
			checkStored(t, s, u.Key, all)
		})
	}

	t.Run("truncated", func(t *testing.T) {
		s := newTestSink(t)
		sess := &fakeSession{}
		u := createUpload(t, s, sess, "uploads/c", int64(len(data)))
		_, err := New(s).Write(t.Context(), u, Chunk{
			Body: bytes.NewReader(data[:len(data)-1]), Size: int64(len(data)),
			Checksum: &Checksum{Algorithm: "sha256", Sum: sums["sha256"]}, Commit: sess.commit,
		})
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("err %v, want ErrTruncated", err)
		}
		if sess.calls != 0 {
			t.Fatalf("%d commits of a truncated checksummed chunk, want 0", sess.calls)
		}
	})
}

func TestLocalTruncatedBody(t *testing.T) {
	s := newTestSink(t)
	sess := &fakeSession{}
	data := randomBytes(5, 24<<20)
	u := createUpload(t, s, sess, "uploads/short", int64(len(data)))
	sent := 18<<20 + 11
	got, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(data[:sent]), Size: int64(len(data)), Commit: sess.commit})
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("err %v, want ErrTruncated", err)
	}
	if got.Offset != int64(sent) || sess.offset != int64(sent) {
		t.Fatalf("offset %d, session %d, want %d (all that was sent is durable)", got.Offset, sess.offset, sent)
	}
	checkCommits(t, data, sess.commits)
	checkStored(t, s, u.Key, data[:sent])

	// Resume with the rest.
	u = sess.upload(u.Key, u.Length)
	if _, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(data[sent:]), Size: int64(len(data) - sent), Commit: sess.commit}); err != nil {
		t.Fatal(err)
	}
	checkStored(t, s, u.Key, data)
	if sum, _ := SumHex(sess.state); sum != sha256Hex(data) {
		t.Fatalf("sha256 %s, want %s", sum, sha256Hex(data))
	}
}

func TestLocalReaderErrorKeepsPrefix(t *testing.T) {
	commitEvery16MiB(t)
	s := newTestSink(t)
	sess := &fakeSession{}
	data := randomBytes(6, 20<<20+9)
	u := createUpload(t, s, sess, "uploads/drop", 64<<20)
	errDrop := errors.New("test: connection reset")
	got, err := New(s).Write(t.Context(), u, Chunk{Body: &failingReader{data: data, err: errDrop}, Size: 64 << 20, Commit: sess.commit})
	if !errors.Is(err, errDrop) {
		t.Fatalf("err %v, want the reader's error", err)
	}
	if got.Offset != int64(len(data)) || sess.offset != int64(len(data)) {
		t.Fatalf("offset %d, session %d, want %d", got.Offset, sess.offset, len(data))
	}
	if len(sess.commits) != 2 {
		t.Fatalf("%d commits, want 2 (at 16 MiB and at the error)", len(sess.commits))
	}
	checkCommits(t, data, sess.commits)
	checkStored(t, s, u.Key, data)
}

func TestLocalTooLarge(t *testing.T) {
	for _, size := range []int64{-1, 5 << 20} {
		t.Run(fmt.Sprint("size", size), func(t *testing.T) {
			s := newTestSink(t)
			sess := &fakeSession{}
			data := randomBytes(7, 5<<20+1)
			u := createUpload(t, s, sess, "uploads/big", 5<<20)
			got, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(data), Size: size, Commit: sess.commit})
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("err %v, want ErrTooLarge", err)
			}
			if got.Offset > u.Length || sess.offset > u.Length {
				t.Fatalf("offset %d, session %d past the length %d", got.Offset, sess.offset, u.Length)
			}
			fi, err := os.Stat(filepath.Join(s.Dir(), "uploads", "big"))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() > u.Length {
				t.Fatalf("stored %d bytes, more than the length %d", fi.Size(), u.Length)
			}
			checkCommits(t, data[:u.Length], sess.commits)
		})
	}
}

func TestLocalCommitErrorStops(t *testing.T) {
	commitEvery16MiB(t)
	errLost := errors.New("test: lease lost")
	t.Run("mid-body", func(t *testing.T) {
		s := newTestSink(t)
		sess := &fakeSession{fail: func(int, Progress) error { return errLost }}
		data := randomBytes(8, 48<<20)
		u := createUpload(t, s, sess, "uploads/lost", int64(len(data)))
		body := &chunkedReader{r: bytes.NewReader(data), max: 1 << 20}
		got, err := New(s).Write(t.Context(), u, Chunk{Body: body, Size: int64(len(data)), Commit: sess.commit})
		if !errors.Is(err, errLost) {
			t.Fatalf("err %v, want the commit's error", err)
		}
		if got.Offset != 0 || sess.calls != 1 {
			t.Fatalf("offset %d after %d commit calls, want 0 after 1", got.Offset, sess.calls)
		}
		// The reader runs ahead of the writer by at most localDepth buffers.
		if limit := localCommitEvery + (localDepth+1)*localBufSize; body.n > limit {
			t.Fatalf("read %d bytes of the body after the commit failed, want at most %d", body.n, limit)
		}
	})
	t.Run("second commit", func(t *testing.T) {
		s := newTestSink(t)
		sess := &fakeSession{fail: func(calls int, _ Progress) error {
			if calls == 2 {
				return errLost
			}
			return nil
		}}
		data := randomBytes(9, 40<<20)
		u := createUpload(t, s, sess, "uploads/lost", int64(len(data)))
		got, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(data), Size: int64(len(data)), Commit: sess.commit})
		if !errors.Is(err, errLost) {
			t.Fatalf("err %v, want the commit's error", err)
		}
		if got.Offset != localCommitEvery || sess.calls != 2 {
			t.Fatalf("offset %d after %d commit calls, want %d after 2", got.Offset, sess.calls, localCommitEvery)
		}
	})
	t.Run("final commit", func(t *testing.T) {
		s := newTestSink(t)
		sess := &fakeSession{fail: func(int, Progress) error { return errLost }}
		u := createUpload(t, s, sess, "uploads/lost", 100)
		got, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(make([]byte, 100)), Size: 100, Commit: sess.commit})
		if !errors.Is(err, errLost) || got.Offset != 0 {
			t.Fatalf("offset %d, err %v; want 0 and the commit's error", got.Offset, err)
		}
	})
}

// A context that ends mid-body stops the write; what was stored is still
// committed (with a context that is not cancelled).
func TestLocalContextCancel(t *testing.T) {
	s := newTestSink(t)
	data := randomBytes(10, 8<<20)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var commitCtxErr error
	sess := &fakeSession{}
	commit := func(cctx context.Context, p Progress) error {
		commitCtxErr = cctx.Err()
		return sess.commit(cctx, p)
	}
	u := createUpload(t, s, sess, "uploads/ctx", int64(len(data)))
	body := &cancelAfter{r: bytes.NewReader(data), n: 3 << 20, cancel: cancel}
	got, err := New(s).Write(ctx, u, Chunk{Body: body, Size: int64(len(data)), Commit: commit})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if got.Offset < 3<<20 || got.Offset >= int64(len(data)) || commitCtxErr != nil {
		t.Fatalf("offset %d (commit ctx err %v), want a committed prefix of at least %d", got.Offset, commitCtxErr, 3<<20)
	}
	checkCommits(t, data, sess.commits)
	checkStored(t, s, u.Key, data[:got.Offset])
}

type cancelAfter struct {
	r      io.Reader
	n      int64
	read   int64
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read += int64(n)
	if c.read >= c.n {
		c.cancel()
	}
	return n, err
}

// Bytes past the committed offset (a crashed or rejected write) are cut
// off before new ones are written.
func TestLocalDropsUncommittedTail(t *testing.T) {
	s := newTestSink(t)
	sess := &fakeSession{}
	data := randomBytes(11, 3000)
	u := createUpload(t, s, sess, "uploads/tail", int64(len(data)))
	if _, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(data[:1000]), Size: 1000, Commit: sess.commit}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.Dir(), "uploads", "tail")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Repeat([]byte{0xee}, 5000)); err != nil { // garbage of a crashed write
		t.Fatal(err)
	}
	f.Close()

	u = sess.upload(u.Key, u.Length)
	if _, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(data[1000:1500]), Size: 500, Commit: sess.commit}); err != nil {
		t.Fatal(err)
	}
	checkStored(t, s, u.Key, data[:1500])
}

// Write returns only after its writer goroutine ended, whatever ended the
// body, and leaves every buffer back in the pool.
func TestLocalWriteJoinsWriter(t *testing.T) {
	commitEvery16MiB(t)
	s := newTestSink(t)
	errLost := errors.New("test: lease lost")
	for i, tc := range []struct {
		body io.Reader
		fail bool
	}{
		{bytes.NewReader(randomBytes(30, 20<<20)), false},
		{&failingReader{data: make([]byte, 3<<20), err: io.ErrUnexpectedEOF}, false},
		{bytes.NewReader(make([]byte, 40<<20)), true},
	} {
		sess := &fakeSession{}
		if tc.fail {
			sess.fail = func(int, Progress) error { return errLost }
		}
		u := createUpload(t, s, sess, fmt.Sprintf("uploads/join%d", i), -1)
		src, err := NewSource(tc.body, u, -1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(t.Context(), u, src, PartRange{}, sess.commit); tc.fail != errors.Is(err, errLost) {
			t.Fatalf("case %d: err %v", i, err)
		}
		// A stage still running is one Write did not join. Counting all
		// goroutines instead failed under load, when an HTTP connection
		// of an earlier S3 test started or ended meanwhile.
		if n := localStages(); n > 0 {
			t.Fatalf("case %d: %d local sink stages still running after Write", i, n)
		}
	}
}

// localStages counts the goroutines running a stage of a local write
// (localPipe's hash or run).
func localStages() int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for g := range strings.SplitSeq(string(buf), "\n\ngoroutine ") {
		if strings.Contains(g, "pipeline.(*localPipe)") {
			n++
		}
	}
	return n
}

func TestLocalConcurrentWriteRefused(t *testing.T) {
	s := newTestSink(t)
	sess := &fakeSession{}
	u := createUpload(t, s, sess, "uploads/busy", 1<<20)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := New(s).Write(t.Context(), u, Chunk{Body: pr, Size: 1 << 20, Commit: sess.commit})
		done <- err
	}()
	if _, err := pw.Write(make([]byte, 10)); err != nil { // the first write is now inside the sink
		t.Fatal(err)
	}

	_, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(make([]byte, 10)), Size: 10, Commit: sess.commit})
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("second write: err %v, want ErrBusy", err)
	}
	if _, err := pw.Write(make([]byte, 1<<20-10)); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if sess.offset != 1<<20 {
		t.Fatalf("offset %d, want %d", sess.offset, 1<<20)
	}
}

func TestLocalConcat(t *testing.T) {
	s := newTestSink(t)
	var parts []Upload
	var all []byte
	for i, n := range []int{3<<20 + 1, 1, 0, 5 << 20} {
		sess := &fakeSession{}
		data := randomBytes(uint64(20+i), n)
		u := createUpload(t, s, sess, fmt.Sprintf("uploads/p%d", i), int64(n))
		got, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(data), Size: int64(n), Commit: sess.commit})
		if err != nil {
			t.Fatal(err)
		}
		u.Offset = got.Offset
		if err := s.Complete(t.Context(), u, nil); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, u)
		all = append(all, data...)
	}
	dst := createUpload(t, s, &fakeSession{}, "uploads/final", int64(len(all)))
	storage, used, err := s.Concat(t.Context(), dst, parts)
	if err != nil {
		t.Fatal(err)
	}
	if storage != nil || used != nil {
		t.Fatalf("Concat returned storage %q parts %v, want nil", storage, used)
	}
	checkStored(t, s, dst.Key, all)

	// Idempotent: again gives the same bytes, not twice as many.
	if _, _, err := s.Concat(t.Context(), dst, parts); err != nil {
		t.Fatal(err)
	}
	checkStored(t, s, dst.Key, all)

	if err := s.Abort(t.Context(), parts[1]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Concat(t.Context(), dst, parts); !errors.Is(err, ErrNoSuchUpload) {
		t.Fatalf("Concat with a missing part: err %v, want ErrNoSuchUpload", err)
	}
}

func TestLocalAbortAndMissing(t *testing.T) {
	s := newTestSink(t)
	sess := &fakeSession{}
	u := createUpload(t, s, sess, "uploads/gone", 20)
	if _, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(make([]byte, 10)), Size: 10, Commit: sess.commit}); err != nil {
		t.Fatal(err)
	}
	// A Write at offset 0 makes the file (Create makes none); past it, a
	// missing file lost committed bytes.
	u = sess.upload(u.Key, u.Length)
	for range 2 {
		if err := s.Abort(t.Context(), u); err != nil {
			t.Fatalf("Abort: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "uploads", "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file still there after Abort: %v", err)
	}
	if _, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(make([]byte, 10)), Size: 10, Commit: sess.commit}); !errors.Is(err, ErrNoSuchUpload) {
		t.Fatalf("Write after Abort: err %v, want ErrNoSuchUpload", err)
	}
	if _, err := s.Open(t.Context(), u.Key); !errors.Is(err, ErrNoSuchUpload) {
		t.Fatalf("Open after Abort: err %v, want ErrNoSuchUpload", err)
	}
	if err := s.Complete(t.Context(), u, nil); !errors.Is(err, ErrNoSuchUpload) {
		t.Fatalf("Complete after Abort: err %v, want ErrNoSuchUpload", err)
	}

	// A file shorter than the committed offset lost bytes: refuse it.
	u2 := createUpload(t, s, sess, "uploads/short", 100)
	u2.Offset = 50
	if _, err := New(s).Write(t.Context(), u2, Chunk{Body: bytes.NewReader(make([]byte, 10)), Size: 10, Commit: sess.commit}); !errors.Is(err, ErrNoSuchUpload) {
		t.Fatalf("Write past the file's end: err %v, want ErrNoSuchUpload", err)
	}
}

func TestLocalKeys(t *testing.T) {
	s := newTestSink(t)
	for _, key := range []string{"", "..", "../x", "uploads/../../x", "uploads/..", "/etc/passwd", `uploads\..\x`} {
		if _, err := s.Create(t.Context(), Upload{Key: key}); err == nil {
			t.Errorf("Create(%q) did not fail", key)
		}
		if _, err := s.Open(t.Context(), key); err == nil {
			t.Errorf("Open(%q) did not fail", key)
		}
	}
	if _, err := s.Create(t.Context(), Upload{Key: "uploads/deep/er/x"}); err != nil {
		t.Fatal(err)
	}
	if n := s.PartsFor(Upload{}, 1<<20); n != 0 {
		t.Fatalf("PartsFor = %d, want 0", n)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(s.Dir(), 0o500); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := os.Chmod(s.Dir(), 0o750); err != nil {
			t.Error(err)
		}
	}()
	if os.Geteuid() != 0 { // root writes anywhere
		if err := s.Ping(t.Context()); !errors.Is(err, ErrStorage) {
			t.Fatalf("Ping of a read-only dir: err %v, want ErrStorage", err)
		}
	}
}

// TestLocalWriteAllocs budgets allocations on the Source.Read + LocalSink
// path: a fixed number per PATCH (file, source, hash state), none per MiB.
func TestLocalWriteAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops pipes at random")
	}
	s := newTestSink(t)
	sess := &fakeSession{}
	u := createUpload(t, s, sess, "uploads/allocs", -1)
	// A PATCH past the first: the first write of an upload makes its
	// file and syncs its directory once, which allocates a few more.
	if _, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(make([]byte, 4096)), Size: 4096, Commit: sess.commit}); err != nil {
		t.Fatal(err)
	}
	u = sess.upload(u.Key, -1)
	data := randomBytes(12, 8<<20)
	ctx := t.Context()
	nop := func(context.Context, Progress) error { return nil }
	r := bytes.NewReader(nil)
	allocs := func(n int) float64 {
		return testing.AllocsPerRun(5, func() {
			r.Reset(data[:n])
			src, err := NewSource(r, u, int64(n))
			if err != nil {
				panic(err)
			}
			if _, err := s.Write(ctx, u, src, PartRange{}, nop); err != nil {
				panic(err)
			}
		})
	}
	small, large := allocs(1<<20), allocs(8<<20)
	t.Logf("allocs per write: %v for 1 MiB, %v for 8 MiB", small, large)
	// Per PATCH: two files (buffered and O_DIRECT), the source and its
	// hashes, the hasher and writer goroutines, the commit state.
	const perWrite = 24
	if small > perWrite {
		t.Errorf("%v allocs for a 1 MiB write, budget %d", small, perWrite)
	}
	if large > small+1 {
		t.Errorf("%v allocs for 8 MiB against %v for 1 MiB: the path allocates per MiB", large, small)
	}
}

// BenchmarkLocalWrite measures a 64 MiB PATCH through Pipeline.Write into
// LocalSink (read and SHA-256 overlapped with pwrite, one fsync at the
// end), as the proxy runs it.
func BenchmarkLocalWrite(b *testing.B) {
	for _, tc := range []struct {
		name   string
		sum    string
		noHint bool
	}{{"plain", "", false}, {"plain-nohint", "", true}, {"checksum-sha256", "sha256", false}} {
		b.Run(tc.name, func(b *testing.B) {
			if tc.noHint {
				writebackHint = false
				defer func() { writebackHint = true }()
			}
			s, err := NewLocalSink(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			data := randomBytes(13, MaxChunk)
			u := Upload{ID: "bench", Key: "uploads/bench", Length: MaxChunk}
			if _, err := s.Create(b.Context(), u); err != nil {
				b.Fatal(err)
			}
			var cs *Checksum
			if tc.sum != "" {
				sum := sha256.Sum256(data)
				cs = &Checksum{Algorithm: tc.sum, Sum: sum[:]}
			}
			p := New(s)
			nop := func(context.Context, Progress) error { return nil }
			r := bytes.NewReader(nil)
			b.SetBytes(MaxChunk)
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				r.Reset(data)
				got, err := p.Write(b.Context(), u, Chunk{Body: r, Size: MaxChunk, Checksum: cs, Commit: nop})
				if err != nil || got.Offset != MaxChunk {
					b.Fatalf("offset %d, err %v", got.Offset, err)
				}
			}
			// CPU time is steadier than wall time on a shared machine.
			cpu := processCPU() - cpu0
			b.ReportMetric(cpu.Seconds()/(float64(b.N)*MaxChunk/(1<<30)), "cpu-s/GiB")
		})
	}
}

// TestLocalHashInlineAboveCores: with more Writes in progress than cores,
// the Writes that start beyond the cores' number hash in their reader
// (hashInline as the server runs it), and every upload's bytes, commits and
// SHA-256 are the source's, inline or not.
func TestLocalHashInlineAboveCores(t *testing.T) {
	s := newTestSink(t)
	procs := runtime.GOMAXPROCS(0)
	n := procs + 2
	type one struct {
		data []byte
		sess *fakeSession
		u    Upload
		body *gatedReader
		got  Progress
		err  error
	}
	open := make(chan struct{})
	ups := make([]*one, n)
	for i := range ups {
		o := &one{data: randomBytes(uint64(100+i), 3<<20+i*4099), sess: &fakeSession{}}
		o.u = createUpload(t, s, o.sess, fmt.Sprintf("uploads/many-%d", i), int64(len(o.data)))
		o.body = &gatedReader{data: o.data, open: open, started: make(chan struct{})}
		ups[i] = o
	}
	var wg sync.WaitGroup
	for _, o := range ups {
		wg.Go(func() {
			o.got, o.err = New(s).Write(t.Context(), o.u, Chunk{Body: o.body, Size: int64(len(o.data)), Commit: o.sess.commit})
		})
		// Each Write reads only after it counted itself, so the next one
		// starts with this one in progress.
		<-o.body.started
	}
	close(open)
	wg.Wait()
	if got, want := s.inlined.Load(), int64(n-procs); got != want {
		t.Fatalf("%d Writes hashed inline, want %d (%d at once on %d cores)", got, want, n, procs)
	}
	for i, o := range ups {
		if o.err != nil || o.got.Offset != int64(len(o.data)) {
			t.Fatalf("upload %d: offset %d, %v; want %d", i, o.got.Offset, o.err, len(o.data))
		}
		checkCommits(t, o.data, o.sess.commits)
		if sum, _ := SumHex(o.got.HashState); sum != sha256Hex(o.data) {
			t.Fatalf("upload %d: sha256 %s, want %s", i, sum, sha256Hex(o.data))
		}
		checkStored(t, s, o.u.Key, o.data)
	}
}

// TestLocalWriteDepth: a Write takes no more buffers than its body can
// fill, the first block's alignment padding included, and an inline one
// no more than localInlineDepth, and never more than the budget holds
// nor none.
func TestLocalWriteDepth(t *testing.T) {
	const budget = 1 << 30
	for _, c := range []struct {
		budget     int64
		inline     bool
		off, limit int64
		want       int
	}{
		{budget, false, 0, 256 << 10, 1},
		{budget, false, 0, localBufSize, 1},
		{budget, false, 1, localBufSize, 2}, // one byte of padding pushes the last byte into a second block
		{budget, false, 4095, localBufSize - 4095, 1},
		{budget, false, 0, MaxChunk, localDepth},
		{budget, true, 0, MaxChunk, localInlineDepth},
		{budget, true, 0, 256 << 10, 1},
		{budget, false, 0, 0, 1},                  // an empty body still needs a buffer to read its end into
		{3 * localBufSize, false, 0, MaxChunk, 3}, // the whole budget holds three
		{localBufSize / 2, false, 0, MaxChunk, 1}, // never none
	} {
		if got := localWriteDepth(c.budget, c.inline, c.off, c.limit); got != c.want {
			t.Errorf("localWriteDepth(budget=%d, inline=%v, off=%d, limit=%d) = %d, want %d", c.budget, c.inline, c.off, c.limit, got, c.want)
		}
	}
}
