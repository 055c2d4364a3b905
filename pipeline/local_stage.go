package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// localBlock is one filled buffer on its way from the reading stage of
// LocalSink.Write through the hashing stage to the writing stage. The
// reader marks commit points; the hasher (or, inline, the reader) adds
// the hash state at exactly end to them; once a commit point's bytes are
// stored, the writer syncs the prefix up to end and commits it with that
// state.
//
// The bytes are buf[pad:pad+n]. With direct I/O the reader puts the byte
// at upload offset x at buf[x%directAlign] of the first block, so that
// every aligned offset sits at an aligned address and the aligned middle
// of each block can go to disk straight from buf.
type localBlock struct {
	buf    []byte // localBufSize, aligned; nil for a commit point without bytes
	pad    int    // bytes before the first byte to store
	n      int    // bytes to store
	off    int64  // upload offset of buf[pad]
	end    int64  // off + n
	commit bool   // a commit point (set by the reader)
	state  []byte // hash state at end (set by the hasher or inline reader at commit points)
	final  bool   // the last commit: run it even if ctx ended
	eos    bool   // no more blocks: the writer returns
}

// directWriteAt writes through the O_DIRECT file (a var so that a test
// can make the file system refuse it).
var directWriteAt = (*os.File).WriteAt

// directAlign is the alignment of O_DIRECT offsets, lengths and buffer
// addresses: the page size, a multiple of every disk's logical block.
const directAlign = 4096

// localPipe connects the three stages of one LocalSink.Write: the
// caller's goroutine reads the body into free buffers and sends them on
// read; the hasher runs them through the Source's digests in order and
// passes them on full; the writer stores them, syncs and commits at commit
// points, and hands every buffer back on free. The socket copy of one
// buffer thus overlaps with hashing the one before, on another core:
// SHA-256 on one core is the ceiling of a single upload. With more Writes
// than cores the pipe runs inline (hashInline): the reader hashes each
// read and sends its blocks to the writer, and no hasher runs. Buffers
// have exactly one owner at a time. A pipe, its buffers and channels are reused
// through localPipes, so a Write allocates none of them in steady state.
type localPipe struct {
	// bufs[:nbuf] are this Write's buffers, taken from the sink's Pool in
	// one charge (fill) and given back by put; the pipe keeps none between
	// Writes, so idle pipes hold no memory outside the budget.
	bufs [localDepth][]byte
	nbuf int
	free chan []byte
	read chan localBlock
	full chan localBlock
	wg   sync.WaitGroup

	// Set by Write before the writer starts, cleared after it ended.
	ctx context.Context
	src *Source  // the hasher's; the reader calls readRaw (and hash, inline)
	f   *os.File // buffered writes, truncation and fdatasync
	// sync makes f's stored bytes durable (the sink's seam, fdatasync).
	sync func(*os.File) error
	df   *os.File // the same file opened O_DIRECT; nil: buffered only
	// aligned: the reader places bytes for direct I/O (see localBlock).
	// Set with df; df may fall back to nil, aligned stays.
	aligned bool
	key     string
	commit  CommitFunc
	// dirSync returns once the directory entry of f is durable; set for
	// a Write at offset 0, which may have made f; called once, before the
	// commit that counts its bytes (TestLocalNewFilesShareDirSync).
	dirSync func() error

	// Owned by the writer until wg.Wait returns.
	last Progress
	err  error
	// failed is set by the writer once it stopped storing: the reader
	// stops reading at its next buffer.
	failed atomic.Bool
	// noDirect is the sink's flag, set when a direct write was refused.
	noDirect *atomic.Bool
	// inline: the reader hashes each block itself and sends it to the
	// writer; no hasher runs.
	inline bool
}

var localPipes = sync.Pool{New: func() any {
	return &localPipe{
		free: make(chan []byte, localDepth),
		read: make(chan localBlock, localDepth),
		full: make(chan localBlock, localDepth),
	}
}}

// getLocalPipe returns a pipe holding n buffers from pool's budget
// (localWriteDepth: at most localDepth), all of them free. It waits, as an S3 part does, while the budget is spent
// (--max-buffer-memory), and returns ctx's error if ctx ends first.
// aligned reports whether every buffer starts at a directAlign boundary,
// which direct I/O needs. Go allocates 1 MiB objects on their own
// page-aligned spans, so in practice they all do; if one does not, the
// Write goes through the page cache.
func getLocalPipe(ctx context.Context, pool *Pool, n int) (p *localPipe, aligned bool, err error) {
	p = localPipes.Get().(*localPipe)
	if err := pool.GetN(ctx, p.bufs[:n], localBufSize); err != nil {
		localPipes.Put(p)
		return nil, false, err
	}
	p.nbuf = n
	aligned = true
	for _, b := range p.bufs[:n] {
		if uintptr(unsafe.Pointer(unsafe.SliceData(b)))%directAlign != 0 {
			aligned = false
		}
		p.free <- b
	}
	return p, aligned, nil
}

// put gives p's buffers back to pool and p to localPipes. Every buffer
// must be back on free: the writer has ended and the reader holds none.
func (p *localPipe) put(pool *Pool) {
	for range p.nbuf {
		pool.Put(<-p.free)
	}
	clear(p.bufs[:])
	p.nbuf = 0
	p.ctx, p.src, p.f, p.df, p.commit, p.key, p.sync, p.dirSync = nil, nil, nil, nil, nil, "", nil, nil
	p.noDirect = nil
	p.aligned, p.inline = false, false
	p.last, p.err = Progress{}, nil
	p.failed.Store(false)
	localPipes.Put(p)
}

// hash is the hashing stage: it hashes every block's bytes in order, adds
// the hash state to commit points and passes the blocks on, the end
// marker included.
func (p *localPipe) hash() {
	for {
		b := <-p.read
		if b.n > 0 {
			p.src.hash(b.buf[b.pad : b.pad+b.n])
		}
		if b.commit {
			b.state = p.src.HashState()
		}
		p.full <- b
		if b.eos {
			return
		}
	}
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
		if err := p.write(b); err != nil {
			// The bytes since the last commit cannot be committed: the
			// reader's hash state already covers bytes not stored.
			return fmt.Errorf("%w: local write %s at %d: %w", storageErr(err), p.key, b.off, err)
		}
	}
	if b.state == nil || b.end <= p.last.Offset {
		return nil
	}
	// The sync comes before the commit, and a failed one commits nothing:
	// every committed offset is durable (TestLocalCommitsOnlySynced).
	if err := p.sync(p.f); err != nil {
		return fmt.Errorf("%w: local fsync %s: %w", storageErr(err), p.key, err)
	}
	if p.dirSync != nil {
		// The file may be new: without its directory entry a crash would
		// lose the bytes about to be committed.
		if err := p.dirSync(); err != nil {
			return err
		}
		p.dirSync = nil
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

// write stores b's bytes. With direct I/O, the aligned middle goes to disk
// from buf without a copy into the page cache (on this kind of VM that
// copy cost more CPU than SHA-256); a head or tail that is not a whole
// aligned block, at most one of each per body, is written through the page
// cache. The two never share a page, and the fdatasync at the commit
// point covers both.
func (p *localPipe) write(b localBlock) error {
	base := b.off - int64(b.pad) // upload offset of buf[0], aligned
	lo := (b.off + directAlign - 1) &^ (directAlign - 1)
	hi := b.end &^ (directAlign - 1)
	if p.df == nil || lo >= hi {
		return p.writeBuffered(b.buf[b.pad:b.pad+b.n], b.off)
	}
	if lo > b.off {
		if err := p.writeBuffered(b.buf[b.pad:lo-base], b.off); err != nil {
			return err
		}
	}
	if _, err := directWriteAt(p.df, b.buf[lo-base:hi-base], lo); err != nil {
		if !errors.Is(err, syscall.EINVAL) {
			return err
		}
		// The file system takes O_DIRECT opens but not these writes: go
		// on through the page cache, and tell the sink not to try again.
		p.df = nil
		p.noDirect.Store(true)
		if err := p.writeBuffered(b.buf[lo-base:hi-base], lo); err != nil {
			return err
		}
	}
	if b.end > hi {
		return p.writeBuffered(b.buf[hi-base:b.end-base], hi)
	}
	return nil
}

// writeBuffered writes through the page cache and starts write-back.
func (p *localPipe) writeBuffered(data []byte, off int64) error {
	if _, err := p.f.WriteAt(data, off); err != nil {
		return err
	}
	startWriteback(p.f, off, int64(len(data)))
	return nil
}

// send passes a block from the reader on: to the hasher, or, when the
// reader hashed it (inline), straight to the writer, with the hash state
// at a commit point.
func (p *localPipe) send(b localBlock) {
	if !p.inline {
		p.read <- b
		return
	}
	if b.commit {
		b.state = p.src.HashState()
	}
	p.full <- b
}
