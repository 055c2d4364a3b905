package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrBusy means another Write of the same upload is running in this process. The
// proxy's lease should make this impossible; the sink refuses rather than
// let two writers interleave bytes in one file.
var ErrBusy = errors.New("pipeline: another write of this upload is in progress")

const (
	// localBufSize is what one Write reads from the body before a pwrite:
	// big enough to keep syscalls rare.
	localBufSize = 1 << 20
	// localDepth is how many buffers one Write has: while the writer
	// stores, syncs and commits some and the hasher hashes others, the
	// reader fills the rest, so the body keeps flowing during an fsync.
	// Only a Write that starts with no more Writes than cores takes this
	// many (localWriteDepth). Buffers come from the sink's budget
	// (LocalBuffers): 200 stalled PATCHes once held 1.2 GiB outside any
	// budget.
	localDepth = 6
	// localInlineDepth is localDepth for a Write that hashes inline
	// (hashInline): its reader waits while its writer stores the buffer.
	// With more uploads than cores the other uploads keep the cores and
	// the disk busy meanwhile, and a deeper pipe only holds memory: 256
	// uploads of 8 MiB at once with six buffers each spent the 1 GiB
	// budget and ran at 35 uploads/s, 41 CPU-ms each; with one,
	// 56.6-62.1 and 19.4-22.1 (bench/RESULTS.md). 32 of 4 MiB and 6 of 64 MiB ran as
	// fast with one buffer as with two.
	localInlineDepth = 1
	// defaultLocalBudget is the buffer budget of a sink built without
	// LocalBuffers (the default of --max-buffer-memory).
	defaultLocalBudget = 1 << 30
	// finalCommitTimeout bounds the commit after the body ended, which
	// runs even when the request's context is done.
	finalCommitTimeout = 10 * time.Second
)

// writebackHint enables startWriteback (benchmarks compare both).
var writebackHint = true

// hashInline tells a Write that starts with writes Writes in progress
// (itself included) whether its reader hashes each read itself. A hasher
// goroutine lets one upload's socket copy and SHA-256 run on two cores at
// once, which is what a lone upload needs. With more Writes than cores,
// every core is busy anyway, and the hand-off only costs a wake-up on
// another core and a second pass over a 1 MiB buffer that has left the
// cache by then; hashing right after each read finds its bytes in cache,
// and the reader can then wait for its writer with a single buffer
// (localInlineDepth). A var so tests can choose.
var hashInline = func(writes int) bool { return writes > runtime.GOMAXPROCS(0) }

// directIO makes Write store the aligned bulk of each body with O_DIRECT
// where the file system allows it (benchmarks and tests compare both).
var directIO = true

// localCommitEvery is how many stored bytes of one body trigger an fsync
// and a commit before its end. Each commit costs an fdatasync and a
// session-store transaction, which measured as a throughput loss at 16 and
// 32 MiB; at MaxChunk a body is committed once, at its end (also when the
// client disconnects or ctx ends), and only a crash mid-PATCH loses its
// bytes. A var so tests can exercise commits within a body.
var localCommitEvery int64 = MaxChunk

// LocalSink stores each upload as one file below a directory: the bytes of
// key "uploads/<id>" are in <dir>/uploads/<id>. Every committed offset was
// fsynced first.
type LocalSink struct {
	dir string
	// bufs is the budget every Write takes its buffers from.
	bufs *Pool
	// sync makes a file's written bytes durable before a commit counts
	// them (fdatasync; a seam so tests can see what was synced).
	sync func(*os.File) error
	// dirs makes new files' directory entries durable, one fsync for
	// the files created meanwhile (local_dirsync.go).
	dirs *dirSyncs

	mu      sync.Mutex
	writing map[string]struct{} // paths with a Write in progress

	// noDirect is set once the file system refused an O_DIRECT open or
	// write: Writes then go through the page cache only.
	noDirect atomic.Bool
	// writes counts the Writes in progress; inlined counts the Writes
	// whose reader hashed the body itself (hashInline).
	writes  atomic.Int32
	inlined atomic.Int64
}

var _ Sink = (*LocalSink)(nil)

// LocalOption configures a LocalSink.
type LocalOption func(*LocalSink)

// LocalBuffers makes every Write take its buffers from pool (the
// --max-buffer-memory budget), waiting while it is spent. Without it the
// sink has a budget of its own of 1 GiB.
func LocalBuffers(pool *Pool) LocalOption {
	return func(s *LocalSink) { s.bufs = pool }
}

// LocalSync replaces the fdatasync that makes written bytes durable
// before each commit (tests wrap it to record or fail syncs).
func LocalSync(sync func(*os.File) error) LocalOption {
	return func(s *LocalSink) { s.sync = sync }
}

// NewLocalSink returns a sink storing files below dir, which it creates if
// needed.
func NewLocalSink(dir string, opts ...LocalOption) (*LocalSink, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("pipeline: local dir %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("pipeline: local dir: %w", err)
	}
	s := &LocalSink{dir: abs, writing: make(map[string]struct{}), sync: syncData, dirs: newDirSyncs()}
	for _, o := range opts {
		o(s)
	}
	if s.bufs == nil {
		s.bufs = NewPool(defaultLocalBudget)
	}
	if s.bufs.Budget() < localBufSize {
		return nil, fmt.Errorf("%w: the local sink needs %d bytes, budget %d", ErrOverBudget, localBufSize, s.bufs.Budget())
	}
	return s, nil
}

// storageErr is the sentinel a failed local write, sync or create is
// reported with: ErrStorageFull when the file system is out of space or
// quota, else ErrStorage.
func storageErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return ErrStorageFull
	}
	return ErrStorage
}

// Dir returns the sink's directory.
func (s *LocalSink) Dir() string { return s.dir }

// path maps an object key to its file, refusing keys that would leave the
// directory.
func (s *LocalSink) path(key string) (string, error) {
	if key == "" || !filepath.IsLocal(filepath.FromSlash(key)) || strings.Contains(key, "\\") {
		return "", fmt.Errorf("pipeline: local: invalid key %q", key)
	}
	for elem := range strings.SplitSeq(key, "/") {
		if elem == ".." {
			return "", fmt.Errorf("pipeline: local: invalid key %q", key)
		}
	}
	return filepath.Join(s.dir, filepath.FromSlash(key)), nil
}

// PartsFor is 0: local files have no parts.
func (s *LocalSink) PartsFor(Upload, int64) int32 { return 0 }

// lock marks path as being written; ErrBusy if it already is.
func (s *LocalSink) lock(path string) (unlock func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, busy := s.writing[path]; busy {
		return nil, ErrBusy
	}
	s.writing[path] = struct{}{}
	return func() {
		s.mu.Lock()
		delete(s.writing, path)
		s.mu.Unlock()
	}, nil
}

// Write stores src's bytes at u.Offset and on. It first cuts the file to
// u.Offset: bytes past the committed offset were left by a write that
// crashed or was not committed (a checksum mismatch), and are not part of
// the upload. Every localCommitEvery bytes, and once at the end of the
// body (EOF, read error or ctx done), it fsyncs and commits.
//
// Reading, hashing and storing overlap: the calling goroutine reads the
// body into up to localDepth buffers, a hasher goroutine hashes them in
// order (or, with more Writes than cores, the reader hashes each read
// itself: hashInline) and a writer goroutine stores them, fsyncs and
// commits; all have ended when Write returns. Nothing past a failed write
// is committed.
func (s *LocalSink) Write(ctx context.Context, u Upload, src *Source, _ PartRange, commit CommitFunc) (Progress, error) {
	last := Progress{Offset: u.Offset, HashState: u.HashState}
	path, err := s.path(u.Key)
	if err != nil {
		return last, err
	}
	unlock, err := s.lock(path)
	if err != nil {
		return last, err
	}
	defer unlock()

	f, err := s.openForWrite(path, u)
	if err != nil {
		return last, err
	}
	defer f.Close()
	if err := truncateTo(f, u.Key, u.Offset); err != nil {
		return last, err
	}

	inline := hashInline(int(s.writes.Add(1)))
	defer s.writes.Add(-1)
	p, aligned, err := getLocalPipe(ctx, s.bufs, localWriteDepth(s.bufs.Budget(), inline, u.Offset, src.limit))
	if err != nil {
		return last, fmt.Errorf("pipeline: local %s: buffers: %w", u.Key, err)
	}
	p.ctx, p.src, p.f, p.key, p.commit, p.sync = ctx, src, f, u.Key, commit, s.sync
	p.last = last
	p.noDirect = &s.noDirect
	if u.Offset == 0 {
		// The first write makes the file (Create makes none); the first
		// commit must find its directory entry durable. Also when the file
		// was there: a write that made it may have ended before its sync.
		// The entry exists from the open on, so its fsync runs now, while
		// the body is read and stored, not after the data's fdatasync: a
		// directory fsync waited for in line behind the others measured
		// ~20 ms of a 4 MiB upload's PATCH with 32 at once. The commit
		// still waits for it (dirSync).
		done := make(chan error, 1)
		go func() { done <- s.dirs.sync(filepath.Dir(path)) }()
		p.dirSync = func() error { return <-done }
	}
	if directIO && aligned && !s.noDirect.Load() {
		df, err := openDirect(path)
		if err != nil {
			s.noDirect.Store(true)
		} else {
			defer df.Close()
			p.df, p.aligned = df, true
		}
	}
	// Inline (hashInline, decided before the buffers were taken): no
	// hasher; the reader hashes each read.
	p.inline = inline
	if p.inline {
		s.inlined.Add(1)
	} else {
		p.wg.Go(p.hash)
	}
	p.wg.Go(p.run)
	rerr := func() error {
		// Even if src panics, the writer is told to end and is waited for.
		defer func() {
			p.send(localBlock{eos: true})
			p.wg.Wait()
		}()
		return readBlocks(ctx, p, src, u.Offset)
	}()
	last, werr := p.last, p.err
	p.put(s.bufs)
	if werr != nil {
		return last, werr
	}
	if rerr == io.EOF {
		rerr = nil
	}
	return last, rerr
}

// localWriteDepth is how many buffers a Write takes: localDepth for one
// with a hasher, localInlineDepth for one that hashes inline, never more
// than a body of at most limit bytes at off can fill (a 256 KiB body
// needs one) nor than the whole budget holds, and at least one.
func localWriteDepth(budget int64, inline bool, off, limit int64) int {
	depth := int64(localDepth)
	if inline {
		depth = localInlineDepth
	}
	need := (off%directAlign + limit + localBufSize - 1) / localBufSize
	return int(max(1, min(depth, need, budget/localBufSize)))
}

// readBlocks is the reading stage of Write: it fills p's free buffers from
// src (which hashes them) and sends them to the writer, marking a commit
// point, with the hash state at its end, every localCommitEvery bytes and
// once at the end of the body. It returns the error that ended the body
// (io.EOF at its end) or ctx's error; once the writer failed it stops
// reading and returns nil (the writer's error is the one to report).
func readBlocks(ctx context.Context, p *localPipe, src *Source, off int64) error {
	planned := off // offset of the last commit point sent
	var rerr error
	for rerr == nil {
		if rerr = ctx.Err(); rerr != nil {
			break
		}
		buf := <-p.free
		if p.failed.Load() {
			p.free <- buf
			return nil
		}
		// With direct I/O only the first block can start unaligned; it is
		// filled up to an aligned end (see localBlock).
		pad := 0
		if p.aligned {
			pad = int(off % directAlign)
		}
		fill := pad
		for fill < len(buf) && rerr == nil {
			var n int
			n, rerr = src.readRaw(buf[fill:])
			if p.inline && n > 0 {
				src.hash(buf[fill : fill+n])
			}
			fill += n
		}
		b := localBlock{buf: buf, pad: pad, n: fill - pad, off: off, end: off + int64(fill-pad)}
		off = b.end
		if rerr == nil && off-planned >= localCommitEvery {
			b.commit, planned = true, off
		}
		p.send(b)
	}
	if off > planned {
		// Commit what was stored even when the body or ctx ended early.
		p.send(localBlock{off: off, end: off, commit: true, final: true})
	}
	return rerr
}

// truncateTo cuts f to size; a file shorter than size lost committed
// bytes, which is reported as ErrNoSuchUpload.
func truncateTo(f *os.File, key string, size int64) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%w: local stat %s: %w", storageErr(err), key, err)
	}
	switch {
	case fi.Size() < size:
		return fmt.Errorf("pipeline: local %s holds %d bytes, committed offset is %d: %w", key, fi.Size(), size, ErrNoSuchUpload)
	case fi.Size() > size:
		if err := f.Truncate(size); err != nil {
			return fmt.Errorf("%w: local truncate %s: %w", storageErr(err), key, err)
		}
	}
	return nil
}

// Complete cuts off bytes past the upload's length (left by an
// uncommitted write) and fsyncs the file. A file already of the upload's
// length needs neither.
func (s *LocalSink) Complete(_ context.Context, u Upload, _ []Part) error {
	path, err := s.path(u.Key)
	if err != nil {
		return err
	}
	if u.Length == 0 {
		// No write made the file (it is made by the first one), or one
		// without a byte made it and committed nothing, so synced
		// nothing: make it durable, empty, with its directory entry.
		return s.createEmpty(path, u.Key)
	}
	if fi, err := os.Stat(path); err == nil && u.Length >= 0 && fi.Size() == u.Length && fi.Mode().IsRegular() {
		// Nothing to cut: every byte is durable already (each was
		// fdatasynced before the commit that recorded it, and an upload
		// completes after its last commit). An fsync would only flush the
		// file's times: one more journal commit per upload for nothing.
		// A stat by name, not an open: this is every upload's last step.
		return nil
	}
	f, err := openExisting(path, u.Key)
	if err != nil {
		return err
	}
	defer f.Close()
	if u.Length >= 0 {
		if err := truncateTo(f, u.Key, u.Length); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%w: local fsync %s: %w", storageErr(err), u.Key, err)
	}
	return nil
}

// Abort removes the upload's file; a missing file is not an error.
func (s *LocalSink) Abort(_ context.Context, u Upload) error {
	path, err := s.path(u.Key)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: local remove %s: %w", storageErr(err), u.Key, err)
	}
	return nil
}

// Concat writes the srcs' bytes into dst in order and fsyncs it. Copies go
// file to file (copy_file_range on Linux), not through user space. Each
// src contributes its first Offset bytes.
func (s *LocalSink) Concat(ctx context.Context, dst Upload, srcs []Upload) ([]byte, []Part, error) {
	path, err := s.path(dst.Key)
	if err != nil {
		return nil, nil, err
	}
	// The file is made here if no write made it (Create makes none).
	if err := s.mkdirDurable(filepath.Dir(path)); err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: local open %s: %w", storageErr(err), dst.Key, err)
	}
	defer f.Close()
	for i, su := range srcs {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if err := s.appendFile(f, su); err != nil {
			return nil, nil, fmt.Errorf("pipeline: local concat %s part %d: %w", dst.Key, i+1, err)
		}
	}
	if err := f.Sync(); err != nil {
		return nil, nil, fmt.Errorf("%w: local fsync %s: %w", storageErr(err), dst.Key, err)
	}
	if err := s.dirs.sync(filepath.Dir(path)); err != nil {
		return nil, nil, err
	}
	return nil, nil, nil
}

func (s *LocalSink) appendFile(dst *os.File, su Upload) error {
	path, err := s.path(su.Key)
	if err != nil {
		return err
	}
	sf, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && su.Offset == 0 {
		// Never written: its file is made by the first write.
		return nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", su.Key, ErrNoSuchUpload)
	}
	if err != nil {
		return fmt.Errorf("%w: open %s: %w", storageErr(err), su.Key, err)
	}
	defer sf.Close()
	// A *io.LimitedReader over an *os.File keeps the copy_file_range path.
	n, err := io.Copy(dst, &io.LimitedReader{R: sf, N: su.Offset})
	if err != nil {
		return fmt.Errorf("%w: copy %s: %w", storageErr(err), su.Key, err)
	}
	if n != su.Offset {
		return fmt.Errorf("%s holds %d bytes, want %d: %w", su.Key, n, su.Offset, ErrNoSuchUpload)
	}
	return nil
}
