// Package pipeline moves PATCH bodies into durable storage: bytes are read
// from the request stream into pooled buffers, hashed while they are in
// cache (whole-object SHA-256 plus the request's Upload-Checksum), and
// handed to a Sink (local disk, or S3 multipart) from that same buffer.
//
// The pipeline does not know about sessions or HTTP: the caller passes the
// upload's state in and gets progress back through a commit callback, which
// it turns into a compare-and-set in the session store.
package pipeline

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"time"
)

// Errors of the pipeline; callers check them with errors.Is.
var (
	// ErrChecksumMismatch: the Upload-Checksum did not match; nothing of
	// the chunk was committed.
	ErrChecksumMismatch = errors.New("pipeline: checksum mismatch")
	// ErrReprDigestMismatch: the chunk completed the upload, but the
	// upload's SHA-256 is not Chunk.Repr; nothing of the chunk was
	// committed.
	ErrReprDigestMismatch = errors.New("pipeline: representation digest mismatch")
	// ErrTruncated: the body ended before its declared length. Whatever
	// was made durable before was committed.
	ErrTruncated = errors.New("pipeline: body ended before Content-Length")
	// ErrTooLarge: the body is longer than the chunk may be.
	ErrTooLarge = errors.New("pipeline: body longer than allowed")
	// ErrStorage wraps storage failures that outlived the retries; the
	// proxy answers 503 with Retry-After.
	ErrStorage = errors.New("pipeline: storage unavailable")
	// ErrStorageFull: the storage has no space left (ENOSPC, EDQUOT). It
	// wraps ErrStorage (nothing unstored was committed either way), but a
	// full disk does not pass by itself like an outage: the proxy answers
	// 507, not 503 "retry later".
	ErrStorageFull = fmt.Errorf("%w: no space left on the device", ErrStorage)
	// ErrNoSuchUpload: the storage no longer has the upload (S3
	// NoSuchUpload, local file gone).
	ErrNoSuchUpload = errors.New("pipeline: no such upload in storage")
	// ErrIncomplete: Complete found that what storage holds (or would
	// hold) is not the upload's Length bytes: committed parts that do not
	// cover the upload, a tail not yet in a part, or an object of another
	// size or checksum. Nothing was made ready. It wraps ErrStorage, so the
	// proxy answers 503 and the client's retry finds the offset unchanged.
	ErrIncomplete = fmt.Errorf("%w: stored bytes do not match the upload", ErrStorage)
	// ErrTailLost: the committed state names a tail object that storage no
	// longer has (the session store rolled back to a state whose tail a
	// later write deleted, or the object was removed). A *TailLostError
	// says where the upload falls back to. It wraps ErrStorage: the client
	// retries, HEADs the fallen-back offset and sends the bytes again.
	ErrTailLost = fmt.Errorf("%w: the upload's tail object is gone", ErrStorage)
)

// Upload is what the pipeline needs to know of an upload session.
type Upload struct {
	ID string
	// Key is the object key (S3) or the path below the data dir (local).
	Key string
	// Length is the declared total length, -1 while deferred.
	Length int64
	// Offset is the committed (durable) offset.
	Offset int64
	// HashState is the marshaled SHA-256 state of bytes [0, Offset);
	// empty at offset 0.
	HashState []byte
	// Storage is the sink's own state, as returned by Create or a commit.
	Storage     []byte
	ContentType string
}

// Part is one stored S3 multipart part. The session store keeps parts as
// they are (sessionstore.Part is this type): the embedded store writes the
// JSON of these fields under their Go names, so a field is never renamed
// or tagged, or an existing data dir no longer reads.
type Part struct {
	Number int32
	ETag   string
	Size   int64
	// Offset is where the part's first byte sits in the object.
	Offset int64
	// Checksum is the part's CRC32C (base64) as S3 stored it, named in
	// CompleteMultipartUpload when the upload declared CRC32C; "" for
	// parts of uploads created before that.
	Checksum string
}

// Progress is a durable prefix of a write.
type Progress struct {
	// Offset is the new committed offset of the upload.
	Offset int64
	// HashState is the SHA-256 state of bytes [0, Offset).
	HashState []byte
	// Storage is the sink's new state (nil: unchanged).
	Storage []byte
	// Parts are parts made durable since the previous Progress.
	Parts []Part
}

// CommitFunc makes a durable prefix visible (a compare-and-set in the
// session store). A non-nil error stops the write; the pipeline returns it.
type CommitFunc func(ctx context.Context, p Progress) error

// Checksum is a parsed Upload-Checksum header.
type Checksum struct {
	Algorithm string // "sha256", "sha1", "md5"
	Sum       []byte
}

// PartRange is the S3 part numbers reserved for one write.
type PartRange struct {
	First int32
	Count int32
}

// Chunk is one PATCH (or POST with data).
type Chunk struct {
	Body io.Reader
	// Size is the Content-Length, -1 when unknown (chunked encoding).
	Size int64
	// Checksum, when set, is verified before anything of the chunk is
	// committed; on mismatch nothing is.
	Checksum *Checksum
	// Repr, when set, is the SHA-256 the whole upload must have (the
	// draft's Repr-Digest); callers set it only on a body that ends the
	// upload. Commits are then held until the chunk was read, and a held
	// progress that completes the upload (it reaches u.Length or, with
	// the length unknown, the body ended before the chunk's limit) is
	// made only if the upload's SHA-256 matches: on mismatch nothing of
	// the chunk is committed (ErrReprDigestMismatch) and the upload stays
	// resumable at its old offset. A body of unknown length that fills
	// the chunk's limit ends the upload only if it is a BodyEnd that says
	// so. Otherwise (a chunk short of the length, a body that goes on
	// past the limit, a failed read) the durable prefix is committed as
	// without Repr, only later.
	Repr   []byte
	Parts  PartRange
	Commit CommitFunc
	// Whole marks a chunk that is the whole upload, from offset 0, whose
	// storage was not created: a sink that is a Putter and PutsWhole it
	// stores it with Put, creating nothing first.
	Whole bool
}

// Putter is a sink that can store a whole upload with one request
// instead of creating its storage first (S3: one PutObject).
type Putter interface {
	// PutsWhole reports whether a write of size bytes at u.Offset can
	// be stored with Put.
	PutsWhole(u Upload, size int64) bool
	// Put is Write of the whole upload into storage not yet created: it
	// commits once, after every byte is stored, or not at all.
	Put(ctx context.Context, u Upload, src *Source, parts PartRange, commit CommitFunc) (Progress, error)
}

// Sink stores upload bytes. LocalSink and S3Sink implement it.
type Sink interface {
	// Create prepares storage for a new upload and returns its state.
	Create(ctx context.Context, u Upload) (storage []byte, err error)
	// PartsFor says how many part numbers a write of size bytes (-1:
	// unknown, up to MaxChunk) at u.Offset may use; 0 for sinks without
	// parts.
	PartsFor(u Upload, size int64) int32
	// Write reads src until EOF or error, storing its bytes from u.Offset
	// on, and calls commit each time a prefix is durable, with the hash
	// state src reported for that prefix. When the upload reaches
	// u.Length the last bytes must be stored so that Complete can finish
	// it (no tail). It returns the last Progress it committed (Offset ==
	// u.Offset when none) and the error that stopped it, if any (a read
	// error of src is returned as is).
	Write(ctx context.Context, u Upload, src *Source, parts PartRange, commit CommitFunc) (Progress, error)
	// Complete turns the stored bytes into the final object (S3:
	// CompleteMultipartUpload with parts; Content-Type from u). It is
	// idempotent.
	Complete(ctx context.Context, u Upload, parts []Part) error
	// Abort frees everything stored for the upload. Idempotent.
	Abort(ctx context.Context, u Upload) error
	// Concat builds dst, whose storage was created empty, from the
	// completed srcs in order (S3: UploadPartCopy, no byte through the
	// proxy where sizes allow) and completes it. It returns dst's final
	// storage state and the parts used.
	Concat(ctx context.Context, dst Upload, srcs []Upload) (storage []byte, parts []Part, err error)
	// Open reads a completed object (downloads in local mode, hashing a
	// concatenation).
	Open(ctx context.Context, key string) (Object, error)
	// URL returns a URL ffprobe and clients can GET the completed object
	// from (S3: presigned for ttl), or "" when the proxy must serve it.
	URL(ctx context.Context, key string, ttl time.Duration) (string, error)
	// DownloadURL is URL for a client's download: the object is served
	// with h's headers instead of its own (S3: response-content-type and
	// response-content-disposition, signed into the URL).
	DownloadURL(ctx context.Context, key string, ttl time.Duration, h ResponseHeaders) (string, error)
	// Ping checks the storage is reachable (for /readyz).
	Ping(ctx context.Context) error
}

// ResponseHeaders are headers a download is served with.
type ResponseHeaders struct {
	ContentType        string
	ContentDisposition string
}

// Object is a stored object opened for reading.
type Object interface {
	io.ReaderAt
	io.Closer
	Size() int64
	// Path is a local file path when there is one (for ffprobe), else "".
	Path() string
}

// Limits of one upload and one chunk (SPEC).
const (
	MaxUploadLength = 50 << 30 // 53687091200
	MaxChunk        = 64 << 20
)

// Pipeline runs chunks through hashing into a Sink.
type Pipeline struct {
	sink Sink
}

// New returns a pipeline writing to sink.
func New(sink Sink) *Pipeline { return &Pipeline{sink: sink} }

// Sink returns the pipeline's sink.
func (p *Pipeline) Sink() Sink { return p.sink }

// Write streams c.Body into storage after u.Offset. Without a checksum
// (or Repr), durable prefixes are committed as they come, so a client that
// disconnects keeps them. With one, the whole chunk is stored, verified and
// committed at once, or not committed at all (ErrChecksumMismatch,
// ErrReprDigestMismatch).
//
// It returns the last committed progress. A body shorter than c.Size gives
// ErrTruncated (after committing what was durable; with a checksum,
// nothing).
func (p *Pipeline) Write(ctx context.Context, u Upload, c Chunk) (Progress, error) {
	src, err := newSource(c.Body, u, c.Size, c.Checksum)
	if err != nil {
		return Progress{Offset: u.Offset, HashState: u.HashState}, err
	}
	defer src.release()

	write := p.sink.Write
	if pt, ok := p.sink.(Putter); ok && c.Whole && pt.PutsWhole(u, c.Size) {
		write = pt.Put
	}
	if c.Checksum == nil && c.Repr == nil {
		last, werr := write(ctx, u, src, c.Parts, c.Commit)
		return last, truncated(werr, src, c.Size)
	}
	return p.writeVerified(ctx, u, c, src, write)
}

// writeFunc is Sink.Write or Putter.Put.
type writeFunc func(ctx context.Context, u Upload, src *Source, parts PartRange, commit CommitFunc) (Progress, error)

// truncated returns werr, or ErrTruncated when the sink took the body
// without error but it held fewer than size bytes (size < 0: unknown).
func truncated(werr error, src *Source, size int64) error {
	if werr == nil && size >= 0 && src.n != size {
		return fmt.Errorf("%w: got %d of %d bytes", ErrTruncated, src.n, size)
	}
	return werr
}

// writeVerified is Write of a chunk with a checksum or a representation
// digest: nothing is committed before the whole chunk was read and
// verified.
func (p *Pipeline) writeVerified(ctx context.Context, u Upload, c Chunk, src *Source, write writeFunc) (Progress, error) {
	// Hold every commit until the whole chunk was read and verified.
	var pending Progress
	havePending := false
	hold := func(_ context.Context, pr Progress) error {
		pending.Offset, pending.HashState = pr.Offset, pr.HashState
		if pr.Storage != nil {
			pending.Storage = pr.Storage
		}
		pending.Parts = append(pending.Parts, pr.Parts...)
		havePending = true
		return nil
	}
	_, werr := write(ctx, u, src, c.Parts, hold)
	werr = truncated(werr, src, c.Size)

	none := Progress{Offset: u.Offset, HashState: u.HashState}
	switch {
	case c.Checksum != nil && werr != nil:
		return none, werr
	case !src.checksumOK():
		return none, ErrChecksumMismatch
	case !havePending:
		return none, werr
	case c.Repr != nil && completes(u, c, src, pending.Offset, werr):
		// It is the representation the client digested, whatever else
		// went wrong.
		ok, err := sumIs(pending.HashState, c.Repr)
		if err != nil {
			return none, err
		}
		if !ok {
			return none, ErrReprDigestMismatch
		}
	}
	if err := c.Commit(ctx, pending); err != nil {
		return none, err
	}
	return pending, werr
}

// completes reports whether the upload is whole once end is committed.
// With the length unknown: the body ended before the chunk's limit or
// exactly at it, and the caller sets Repr only on a body that ends the
// upload.
func completes(u Upload, c Chunk, src *Source, end int64, werr error) bool {
	if u.Length >= 0 {
		return end == u.Length
	}
	return werr == nil && (src.n < src.limit || bodyEnded(c.Body))
}

// BodyEnd is a chunk body that is one piece of a longer request body (a
// segment of at most MaxChunk): Ended reports whether the request body
// ended with it. It is asked only when the chunk filled its limit, and may
// read ahead (keeping what it read for the next piece).
type BodyEnd interface {
	Ended() bool
}

// bodyEnded reports whether body is a BodyEnd whose request body ended.
func bodyEnded(body io.Reader) bool {
	e, ok := body.(BodyEnd)
	return ok && e.Ended()
}

// sumIs reports whether the SHA-256 of the bytes whose state is given is
// want.
func sumIs(state, want []byte) (bool, error) {
	h, err := ResumeHash(state)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(h.Sum(nil), want) == 1, nil
}

// TailLostError is ErrTailLost with the last consistent state: the offset
// before the lost tail, its hash state and the storage state without the
// tail. The caller commits Fallback (a rewind: the offset moves back) and
// the client sends the tail's bytes again.
type TailLostError struct {
	Key      string
	Fallback Progress
}

func (e *TailLostError) Error() string {
	return fmt.Sprintf("pipeline: tail of %s is gone; the upload falls back to offset %d", e.Key, e.Fallback.Offset)
}

func (e *TailLostError) Unwrap() error { return ErrTailLost }
