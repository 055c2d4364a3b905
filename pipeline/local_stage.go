package pipeline

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// localBlock is one filled buffer on its way from the reading stage of
// LocalSink.Write to the writing stage. A block with a hash state is a
// commit point: once its bytes are stored, the prefix up to end is synced
// and committed with that state, which the reader took at exactly end.
type localBlock struct {
	buf   *[localBufSize]byte // nil for a commit point without bytes
	n     int                 // bytes of buf to store
	off   int64               // upload offset of buf[0]
	end   int64               // off + n
	state []byte              // hash state at end; nil: no commit here
	final bool                // the last commit: run it even if ctx ended
	eos   bool                // no more blocks: the writer returns
}

// localPipe connects the two stages of one LocalSink.Write: the caller's
// goroutine reads and hashes the body into free buffers and sends them on
// full; the writer goroutine stores them, syncs and commits at commit
// points, and hands every buffer back on free. Buffers have exactly one
// owner at a time. A pipe, its buffers and channels are reused through
// localPipes, so a Write allocates none of them in steady state.
type localPipe struct {
	bufs [localDepth]*[localBufSize]byte
	free chan *[localBufSize]byte
	full chan localBlock
	wg   sync.WaitGroup

	// Set by Write before the writer starts, cleared after it ended.
	ctx    context.Context
	f      *os.File
	key    string
	commit CommitFunc

	// Owned by the writer until wg.Wait returns.
	last Progress
	err  error
	// failed is set by the writer once it stopped storing: the reader
	// stops reading at its next buffer.
	failed atomic.Bool
}

var localPipes = sync.Pool{New: func() any {
	p := &localPipe{
		free: make(chan *[localBufSize]byte, localDepth),
		full: make(chan localBlock, localDepth),
	}
	for i := range p.bufs {
		p.bufs[i] = new([localBufSize]byte)
	}
	return p
}}

// getLocalPipe returns a pipe whose buffers are all free.
func getLocalPipe() *localPipe {
	p := localPipes.Get().(*localPipe)
	for _, b := range p.bufs {
		p.free <- b
	}
	return p
}

// put returns p to the pool. Every buffer must be back on free: the
// writer has ended and the reader holds none.
func (p *localPipe) put() {
	for range p.bufs {
		<-p.free
	}
	p.ctx, p.f, p.commit, p.key = nil, nil, nil, ""
	p.last, p.err = Progress{}, nil
	p.failed.Store(false)
	localPipes.Put(p)
}

// run is the writing stage. It takes blocks from full until the reader
// sends the end marker, storing them in order; after a failure it only
// hands their buffers back.
func (p *localPipe) run() {
	for {
		b := <-p.full
		if b.eos {
			return
		}
		if p.err == nil {
			p.err = p.store(b)
			if p.err != nil {
				p.failed.Store(true)
			}
		}
		if b.buf != nil {
			p.free <- b.buf
		}
	}
}

// store writes b at its offset and, at a commit point, syncs and commits.
func (p *localPipe) store(b localBlock) error {
	if b.n > 0 {
		if _, err := p.f.WriteAt(b.buf[:b.n], b.off); err != nil {
			// The bytes since the last commit cannot be committed: the
			// reader's hash state already covers bytes not stored.
			return fmt.Errorf("%w: local write %s at %d: %w", ErrStorage, p.key, b.off, err)
		}
		startWriteback(p.f, b.off, int64(b.n))
	}
	if b.state == nil || b.end <= p.last.Offset {
		return nil
	}
	if err := syncData(p.f); err != nil {
		return fmt.Errorf("%w: local fsync %s: %w", ErrStorage, p.key, err)
	}
	pr := Progress{Offset: b.end, HashState: b.state}
	ctx := p.ctx
	if b.final || ctx.Err() != nil {
		// Commit what was stored even when the client went away or ctx
		// ended: those bytes are durable now and must count.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), finalCommitTimeout)
		defer cancel()
	}
	if err := p.commit(ctx, pr); err != nil {
		return err
	}
	p.last = pr
	return nil
}
