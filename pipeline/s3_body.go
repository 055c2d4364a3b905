package pipeline

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"
)

// A part or tail upload that the write gives up on (a commit conflict, a
// takeover, a DELETE, the client gone) must not land in S3 after Write
// returned: its caller may complete or abort the multipart upload next,
// and a part that the store links after that leaves a multipart upload
// behind (versitygw's posix backend recreates the upload's directory for
// it; AWS documents that an abort may have to be repeated for parts still
// in flight). Cancelling the request's context only closes our end of the
// connection: once S3 has the whole body it goes on and stores it.
//
// So a request is cut only while its body is not yet whole on the wire:
// the body holds back its last byte until it asks its sendGate, and once
// that byte went out the request is left to finish with S3's answer
// (bounded by the stall timeout, and by s3SettleGrace). Either S3 never
// had the whole part (and its CRC32C refuses what it had), or Write waits
// for the answer.

// s3SettleGrace bounds how long a cancelled write waits for S3 to answer
// a request whose body it already sent whole.
const s3SettleGrace = 5 * time.Second

// errSendCut ends a body whose request was cut before its last byte.
var errSendCut = errors.New("pipeline: s3 request cut before its body was sent")

// sendGate decides, once, between cutting a request and letting it
// finish: it goes from open to sent or to cut, never back.
type sendGate struct{ state atomic.Int32 }

const (
	gateOpen int32 = iota
	gateSent
	gateCut
)

// pass lets the body's last byte go (again, when a retry resends it),
// unless the request was cut.
func (g *sendGate) pass() error {
	if g.state.CompareAndSwap(gateOpen, gateSent) || g.state.Load() == gateSent {
		return nil
	}
	return errSendCut
}

// stop cuts the request unless its body went out whole; it reports
// whether it did.
func (g *sendGate) stop() bool { return g.state.CompareAndSwap(gateOpen, gateCut) }

// gatedBody is a request body over b that asks gate before its last byte.
// It keeps what the SDK and bulkConn use of bytes.Reader: Seek (retries
// rewind it), Len, and WriteTo (the part goes out from its own buffer).
type gatedBody struct {
	b    []byte
	off  int
	gate *sendGate
}

// Len implements the SDK's length probe: the bytes left to read.
func (r *gatedBody) Len() int { return len(r.b) - r.off }

// Read implements io.Reader.
func (r *gatedBody) Read(p []byte) (int, error) {
	rest := r.b[r.off:]
	if len(rest) == 0 {
		return 0, io.EOF
	}
	if len(p) >= len(rest) {
		if err := r.gate.pass(); err != nil {
			return 0, err
		}
	}
	n := copy(p, rest)
	r.off += n
	return n, nil
}

// WriteTo implements io.WriterTo: all but the last byte in one write,
// then the last byte once the gate lets it go.
func (r *gatedBody) WriteTo(w io.Writer) (int64, error) {
	rest := r.b[r.off:]
	if len(rest) == 0 {
		return 0, nil
	}
	n, err := w.Write(rest[:len(rest)-1])
	r.off += n
	if err != nil {
		return int64(n), err
	}
	if err := r.gate.pass(); err != nil {
		return int64(n), err
	}
	m, err := w.Write(rest[len(rest)-1:])
	r.off += m
	return int64(n + m), err
}

// Seek implements io.Seeker.
func (r *gatedBody) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = int64(r.off) + offset
	case io.SeekEnd:
		abs = int64(len(r.b)) + offset
	default:
		return 0, errors.New("pipeline: gatedBody.Seek: invalid whence")
	}
	if abs < 0 || abs > int64(len(r.b)) {
		return 0, errors.New("pipeline: gatedBody.Seek: position out of range")
	}
	r.off = int(abs)
	return abs, nil
}

// settled runs send with a body over b and a context that ctx cancels
// only while the body is not yet sent whole; after that, send runs until
// S3 answers or grace passed since ctx ended.
func settled[T any](ctx context.Context, grace time.Duration, b []byte, send func(ctx context.Context, body io.ReadSeeker) (T, error)) (T, error) {
	gate := &sendGate{}
	reqCtx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	stop := context.AfterFunc(ctx, func() {
		if gate.stop() {
			cancel(context.Cause(ctx))
			return
		}
		// Cancelling reqCtx after send returned is a no-op.
		time.AfterFunc(grace, func() { cancel(context.Cause(ctx)) })
	})
	defer stop()
	return send(reqCtx, &gatedBody{b: b, gate: gate})
}
