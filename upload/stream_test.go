package upload

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/roughy/ingest/pipeline"
)

// streamBody is a request body of known bytes read in segments.
type streamBody struct {
	*testBody
	r *bytes.Reader
}

func newStreamBody(data []byte) streamBody {
	r := bytes.NewReader(data)
	return streamBody{testBody: newTestBody(r), r: r}
}

func (b streamBody) AtEOF() bool { return b.r.Len() == 0 }
func (b streamBody) Ended() bool { return b.r.Len() == 0 }

// TestAppendStream: one request's body longer than one append is
// written in segments, each committed (Committed is told), and the
// request that ends the upload completes it, its Repr-Digest verified;
// with an unknown size, the length is the offset where the body ended,
// and a body that ends short of a known length is ErrInconsistentLength.
func TestAppendStream(t *testing.T) {
	onBoth(t, svcConfig, func(t *testing.T, e *svcEnv) {
		data := make([]byte, pipeline.MaxChunk+100<<10)
		rand.Read(data)
		sum := sha256.Sum256(data)
		sess := e.create(int64(len(data)))
		var committed []int64
		got, err := e.svc.AppendStream(t.Context(), sess, StreamRequest{Size: int64(len(data)), Done: true, Repr: sum[:],
			Body: newStreamBody(data), Committed: func(o int64) { committed = append(committed, o) },
			Heads: sess.HeadFence, Began: time.Now()})
		if err != nil || !got.Completed {
			t.Fatalf("AppendStream: completed %v (%v), want completed", got.Completed, err)
		}
		if len(committed) < 2 || committed[len(committed)-1] != int64(len(data)) {
			t.Fatalf("commits told: %v, want at least one per segment, the last at %d", committed, len(data))
		}
		e.wantStored(sess.ID, data)

		small := []byte("a body of unknown size ends the upload")
		sess = e.create(-1)
		if _, err := e.svc.AppendStream(t.Context(), sess, StreamRequest{Size: -1, Done: true,
			Body: newStreamBody(small), Heads: sess.HeadFence, Began: time.Now()}); err != nil {
			t.Fatalf("AppendStream of unknown size: %v", err)
		}
		e.wantStored(sess.ID, small)

		sess = e.create(100)
		_, err = e.svc.AppendStream(t.Context(), sess, StreamRequest{Size: -1, Done: true,
			Body: newStreamBody(small), Heads: sess.HeadFence, Began: time.Now()})
		if !errors.Is(err, ErrInconsistentLength) {
			t.Fatalf("a body that ends short of the length: got %v, want ErrInconsistentLength", err)
		}
	})
}
