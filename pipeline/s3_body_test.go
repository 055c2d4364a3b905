package pipeline

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// TestGatedBody: the body reads, writes itself and seeks like a
// bytes.Reader, and once cut it never gives up its last byte.
func TestGatedBody(t *testing.T) {
	data := []byte("0123456789")
	for _, tc := range []struct {
		name string
		send func(r *gatedBody, w *bytes.Buffer) error
	}{
		{"Read", func(r *gatedBody, w *bytes.Buffer) error {
			_, err := io.Copy(w, struct{ io.Reader }{r})
			return err
		}},
		{"WriteTo", func(r *gatedBody, w *bytes.Buffer) error {
			_, err := r.WriteTo(w)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &sendGate{}
			r := &gatedBody{b: data, gate: g}
			if n, err := r.Seek(4, io.SeekStart); n != 4 || err != nil || r.Len() != 6 {
				t.Fatalf("Seek(4): %d, %v, Len %d", n, err, r.Len())
			}
			var w bytes.Buffer
			if err := tc.send(r, &w); err != nil || w.String() != "456789" {
				t.Fatalf("sent %q, %v; want 456789", w.String(), err)
			}
			if g.stop() {
				t.Fatal("stop cut a request whose body went out whole")
			}

			g = &sendGate{}
			r = &gatedBody{b: data, gate: g}
			if !g.stop() {
				t.Fatal("stop did not cut a request not yet sent")
			}
			w.Reset()
			if err := tc.send(r, &w); !errors.Is(err, errSendCut) || w.Len() >= len(data) {
				t.Fatalf("cut body sent %q, %v; want less than all of it and errSendCut", w.String(), err)
			}
		})
	}
}

// TestSettled: the request's context ends with the caller's while the body
// is not yet sent whole; after that it lives until the send returns, or
// until the grace passed.
func TestSettled(t *testing.T) {
	t.Run("cut before sent", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		_, err := settled(ctx, s3SettleGrace, []byte("abc"), func(rctx context.Context, body io.ReadSeeker) (int, error) {
			cancel()
			<-rctx.Done() // cut: the request's context ends too
			_, err := io.ReadAll(body)
			return 0, err
		})
		if !errors.Is(err, errSendCut) {
			t.Fatalf("err %v, want errSendCut", err)
		}
	})
	t.Run("sent whole", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		got, err := settled(ctx, s3SettleGrace, []byte("abc"), func(rctx context.Context, body io.ReadSeeker) (int, error) {
			b, err := io.ReadAll(body)
			if err != nil {
				return 0, err
			}
			cancel()
			select {
			case <-rctx.Done():
				return 0, context.Cause(rctx)
			case <-time.After(200 * time.Millisecond): // S3 answering
			}
			return len(b), nil
		})
		if err != nil || got != 3 {
			t.Fatalf("got %d, %v; want 3, nil: a request sent whole was cut", got, err)
		}
	})
	t.Run("grace", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		_, err := settled(ctx, 50*time.Millisecond, []byte("abc"), func(rctx context.Context, body io.ReadSeeker) (int, error) {
			if _, err := io.ReadAll(body); err != nil {
				return 0, err
			}
			cancel()
			<-rctx.Done() // an S3 that never answers: cut after the grace
			return 0, context.Cause(rctx)
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
	})
}
