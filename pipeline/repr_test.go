package pipeline

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"
)

// TestLocalReprDigest: a chunk with Repr holds its commits; the one that
// completes the upload is made only when the upload's SHA-256 matches.
func TestLocalReprDigest(t *testing.T) {
	commitEvery16MiB(t)
	data := randomBytes(7, 40<<20+13)
	head := 3<<20 + 1 // a first write without Repr
	whole := sha256.Sum256(data)
	bad := whole
	bad[5] ^= 1

	// setup writes the head and returns the upload as it stands after it.
	setup := func(t *testing.T) (*LocalSink, *fakeSession, Upload) {
		s := newTestSink(t)
		sess := &fakeSession{}
		u := createUpload(t, s, sess, "uploads/repr", int64(len(data)))
		if _, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(data[:head]), Size: int64(head), Commit: sess.commit}); err != nil {
			t.Fatal(err)
		}
		return s, sess, sess.upload(u.Key, u.Length)
	}

	t.Run("mismatch keeps the offset, retry completes", func(t *testing.T) {
		s, sess, u := setup(t)
		calls := sess.calls
		rest := data[head:]
		got, err := New(s).Write(t.Context(), u, Chunk{
			Body: bytes.NewReader(rest), Size: int64(len(rest)), Repr: bad[:], Commit: sess.commit,
		})
		if !errors.Is(err, ErrReprDigestMismatch) {
			t.Fatalf("err %v, want ErrReprDigestMismatch", err)
		}
		if sess.calls != calls || got.Offset != int64(head) || sess.offset != int64(head) {
			t.Fatalf("after a mismatch: %d commits, offset %d, session %d; want 0 commits, both %d",
				sess.calls-calls, got.Offset, sess.offset, head)
		}

		// The same request with the right digest: one commit, at the end.
		u = sess.upload(u.Key, u.Length)
		got, err = New(s).Write(t.Context(), u, Chunk{
			Body: bytes.NewReader(rest), Size: int64(len(rest)), Repr: whole[:], Commit: sess.commit,
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.Offset != int64(len(data)) || sess.calls != calls+1 {
			t.Fatalf("retry: offset %d after %d commits; want %d after 1 (held)", got.Offset, sess.calls-calls, len(data))
		}
		checkCommits(t, data, sess.commits)
		checkStored(t, s, u.Key, data)
	})

	t.Run("unknown length: the body's end is the upload's", func(t *testing.T) {
		s := newTestSink(t)
		sess := &fakeSession{}
		u := createUpload(t, s, sess, "uploads/repr-deferred", -1)
		if _, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(data[:head]), Size: -1, Commit: sess.commit}); err != nil {
			t.Fatal(err)
		}
		u = sess.upload(u.Key, -1)
		calls := sess.calls
		_, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(data[head:]), Size: -1, Repr: bad[:], Commit: sess.commit})
		if !errors.Is(err, ErrReprDigestMismatch) || sess.calls != calls || sess.offset != int64(head) {
			t.Fatalf("chunked end with a wrong Repr: err %v, %d commits, offset %d; want ErrReprDigestMismatch, 0, %d",
				err, sess.calls-calls, sess.offset, head)
		}
		if _, err := New(s).Write(t.Context(), u, Chunk{Body: bytes.NewReader(data[head:]), Size: -1, Repr: whole[:], Commit: sess.commit}); err != nil {
			t.Fatal(err)
		}
		if sess.offset != int64(len(data)) {
			t.Fatalf("offset %d after the right Repr, want %d", sess.offset, len(data))
		}
		checkCommits(t, data, sess.commits)
		checkStored(t, s, u.Key, data)
	})

	t.Run("chunk short of the length is not verified", func(t *testing.T) {
		s, sess, u := setup(t)
		end := head + 20<<20
		// Repr is of the whole upload, which this chunk does not complete:
		// the durable prefix is committed (once, at the end of the chunk).
		got, err := New(s).Write(t.Context(), u, Chunk{
			Body: bytes.NewReader(data[head:end]), Size: int64(end - head), Repr: bad[:], Commit: sess.commit,
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.Offset != int64(end) || sess.offset != int64(end) {
			t.Fatalf("offset %d, session %d, want %d", got.Offset, sess.offset, end)
		}
		checkCommits(t, data, sess.commits)
	})

	t.Run("truncated completing chunk keeps its prefix", func(t *testing.T) {
		s, sess, u := setup(t)
		sent := head + 18<<20 + 7
		got, err := New(s).Write(t.Context(), u, Chunk{
			Body: bytes.NewReader(data[head:sent]), Size: int64(len(data) - head), Repr: whole[:], Commit: sess.commit,
		})
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("err %v, want ErrTruncated", err)
		}
		if got.Offset != int64(sent) || sess.offset != int64(sent) {
			t.Fatalf("offset %d, session %d, want %d (what was sent is durable)", got.Offset, sess.offset, sent)
		}
		checkCommits(t, data, sess.commits)
		checkStored(t, s, u.Key, data[:sent])
	})
}
