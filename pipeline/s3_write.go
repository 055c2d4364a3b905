package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// ErrPartRange means a write needed more part numbers than were reserved for
// it (PartsFor and the reservation disagree). Nothing past the last
// committed part is stored.
var ErrPartRange = errors.New("pipeline: s3 write needs more part numbers than reserved")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// s3Pending is one part or tail of a write on its way to S3. The reader
// creates it, one upload goroutine fills in the result and sends on done
// exactly once, the committer commits it in order.
type s3Pending struct {
	done  chan error // capacity 1
	end   int64      // upload offset after the bytes
	hash  []byte     // SHA-256 state at end
	state []byte     // storage state once committed
	part  Part       // Number 0: a tail, no part
}

// s3Write is one Write call's shared, read-only context.
type s3Write struct {
	s      *S3Sink
	u      Upload
	src    *Source
	commit CommitFunc
	st     s3State
}

// Write streams src into the multipart upload. The data path: bytes are
// read from src (which hashes them as it reads) straight into a pooled
// part buffer, CRC32C'd in the same loop while in cache, and uploaded from
// that buffer (bytes.Reader over it): no temp file, no second copy. The
// next buffer is read while earlier parts upload: at most
// cfg.PartConcurrency parts per write are in flight, and a buffer is taken
// from the pool (the global budget) before its upload goroutine exists.
//
// Parts take the numbers of parts, in order. Each is committed, strictly
// in offset order, once S3 acknowledged it and every earlier one. Bytes at
// the end that do not make a part (a body that ended, or failed, mid-part)
// are stored as a new tail object and committed; the next write reads that
// tail back into its first buffer. Tails are deleted only by a later write
// or by Complete/Abort, once committed state no longer refers to them.
//
// commit is called from a goroutine of the write, one call at a time, never
// after Write returned. Memory: at most PartConcurrency+1 buffers of up to
// two part sizes per write, all charged to the pool's budget.
func (s *S3Sink) Write(ctx context.Context, u Upload, src *Source, parts PartRange, commit CommitFunc) (Progress, error) {
	last := Progress{Offset: u.Offset, HashState: u.HashState}
	st, err := decodeS3State(u.Storage)
	if err != nil {
		return last, err
	}
	w := &s3Write{s: s, u: u, src: src, commit: commit, st: st}
	return w.run(ctx, parts, last)
}

func (w *s3Write) run(parent context.Context, parts PartRange, last Progress) (Progress, error) {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	var wg sync.WaitGroup
	defer wg.Wait()

	if len(w.st.Stale) > 0 {
		stale := w.st.Stale
		// Committed state says nothing refers to these any more. A failed
		// delete leaves garbage that Complete/Abort remove by prefix.
		wg.Go(func() {
			for _, key := range stale {
				if err := w.s.deleteObject(ctx, key); err != nil {
					slog.WarnContext(ctx, "pipeline: s3 delete stale tail", "key", key, "err", err)
				}
			}
		})
	}

	queue := make(chan *s3Pending, w.s.cfg.PartConcurrency+1)
	var storeErr error // set by the committer, read after it ended
	committed := make(chan struct{})
	wg.Go(func() {
		defer close(committed)
		storeErr = w.commitInOrder(ctx, cancel, queue, &last)
	})

	readErr := w.read(ctx, &wg, queue, parts)
	close(queue)
	<-committed
	switch {
	case storeErr != nil:
		return last, storeErr
	case readErr != nil:
		return last, readErr
	}
	return last, nil
}

// commitInOrder commits queued parts and tails in order, each once its
// upload succeeded. On the first failure it cancels the write and only
// drains the queue. It runs in its own goroutine; last is written only
// here until it returns.
func (w *s3Write) commitInOrder(ctx context.Context, cancel context.CancelCauseFunc, queue <-chan *s3Pending, last *Progress) error {
	var failed error
	for p := range queue {
		err := <-p.done
		if failed != nil {
			continue
		}
		if err == nil {
			pr := Progress{Offset: p.end, HashState: p.hash, Storage: p.state}
			if p.part.Number != 0 {
				pr.Parts = []Part{p.part}
			}
			if err = w.commit(ctx, pr); err == nil {
				*last = pr
				continue
			}
		}
		failed = err
		cancel(err)
	}
	return failed
}

// read fills buffers from src and hands each to an upload goroutine,
// until src ends, fails, or the write is cancelled. It returns src's error
// (nil at EOF) or the reason it stopped early.
//
//nolint:gocyclo,funlen // One loop over the body whose locals (next part number, carried tail, hash base, the buffer's owner) change together at each step; split up they would travel as a bag of pointers.
func (w *s3Write) read(ctx context.Context, wg *sync.WaitGroup, queue chan<- *s3Pending, parts PartRange) error {
	s, src, u := w.s, w.src, w.u
	partSize := w.st.PartSize
	sem := make(chan struct{}, s.cfg.PartConcurrency)
	next, left := parts.First, parts.Count
	uploadID := w.st.UploadID
	cur := w.st
	cur.Stale = nil
	carry := cur.TailSize
	// base is the hash state at the first byte of the next buffer: a tail
	// made of it records it (s3State.TailHash).
	base := u.HashState
	if carry > 0 {
		base = w.st.TailHash
	}

	for {
		remaining := src.limit - src.n
		if remaining <= 0 && (carry == 0 || u.Length < 0 || src.Offset() != u.Length) {
			return probeEnd(src)
		}
		// With nothing left to read, a carried tail still goes round once
		// more when this write completes the upload (an empty last PATCH
		// that sets Upload-Length, an empty final draft append): it
		// becomes the last part, since Complete stores parts only.
		want := s3BufferSize(s.cfg.Layout, partSize, carry, remaining)
		// The buffer belongs to this loop until it is handed to an upload
		// goroutine, which puts it back once S3 answered.
		buf, err := s.pool.Get(ctx, int(want))
		if err != nil {
			return fmt.Errorf("pipeline: s3 part buffer: %w", err)
		}

		var crc uint32
		n := 0
		if carry > 0 {
			if err := w.readTail(ctx, buf[:carry]); err != nil {
				s.pool.Put(buf)
				return err
			}
			crc = crc32.Update(crc, castagnoli, buf[:carry])
			n = int(carry)
		}
		tailBytes := n
		n, crc, rerr := fillPart(src, buf, n, crc)
		if rerr == nil && int64(n) == want && want == carry+remaining {
			// The buffer took all the body may hold: probe its end before
			// storing it, so a body longer than allowed is not cut short
			// silently and stores nothing of this buffer.
			rerr = probeEnd(src)
		}
		if errors.Is(rerr, ErrTooLarge) {
			// Bytes past the allowed length: keep what was committed
			// before this buffer, store nothing of it.
			s.pool.Put(buf)
			return rerr
		}
		end := src.Offset()
		complete := u.Length >= 0 && end == u.Length
		hadTail := carry > 0
		carry = 0
		isPart := s3IsPart(partSize, int64(n), complete)
		if !isPart && n == tailBytes {
			// Nothing new was read (only the old tail, if any).
			s.pool.Put(buf)
			return readEnd(rerr)
		}
		if isPart && left == 0 {
			s.pool.Put(buf)
			return fmt.Errorf("%w: part %d of range %d+%d", ErrPartRange, next, parts.First, parts.Count)
		}
		// An upload slot: at most PartConcurrency uploads of this write
		// run while the next buffer fills.
		if ctx.Err() != nil {
			s.pool.Put(buf)
			return context.Cause(ctx)
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			s.pool.Put(buf)
			return context.Cause(ctx)
		}
		release := func() { s.pool.Put(buf); <-sem }

		p := &s3Pending{done: make(chan error, 1), end: end, hash: src.HashState()}
		if isPart {
			if hadTail {
				cur.Stale = append(cur.Stale, cur.Tail)
				cur.Tail, cur.TailSize, cur.TailHash = "", 0, nil
			}
			p.part = Part{Number: next, Size: int64(n), Offset: end - int64(n)}
			p.state = cur.encode()
			next++
			left--
			wg.Go(func() {
				defer release()
				var err error
				p.part.ETag, p.part.Checksum, err = s.uploadPart(ctx, u.Key, uploadID, p.part.Number, buf[:n], crc)
				p.done <- err
			})
		} else {
			// The body ended or failed before a part was full: store the
			// bytes as the new tail.
			key := newTailKey(u.Key)
			if hadTail {
				cur.Stale = append(cur.Stale, cur.Tail)
			}
			cur.Tail, cur.TailSize, cur.TailHash = key, int64(n), base
			p.state = cur.encode()
			wg.Go(func() {
				defer release()
				p.done <- s.putTail(ctx, key, buf[:n], crc)
			})
		}
		queue <- p
		base = p.hash
		if rerr != nil {
			return readEnd(rerr)
		}
	}
}

// readEnd is read's result for src's error: nil at EOF.
func readEnd(err error) error {
	if err == io.EOF {
		return nil
	}
	return err
}

// probeEnd checks src has nothing past its limit: ErrTooLarge if it has,
// else nil (other errors after the last allowed byte do not matter).
func probeEnd(src *Source) error {
	var probe [1]byte
	if _, err := src.Read(probe[:0]); errors.Is(err, ErrTooLarge) {
		return err
	}
	return nil
}

// fillPart reads src into buf[n:] until buf is full or src stops, and
// updates crc over the bytes read while they are in cache. A nil error
// means buf is full; io.EOF that src ended.
func fillPart(src *Source, buf []byte, n int, crc uint32) (int, uint32, error) {
	// src computes the CRC32C with its other digests, block by block
	// while the bytes are in cache.
	src.sumCRC, src.crc = true, crc
	defer func() { src.sumCRC = false }()
	for n < len(buf) {
		k, err := src.Read(buf[n:])
		n += k
		if err != nil {
			return n, src.crc, err
		}
	}
	return n, src.crc, nil
}

// readTail reads the committed tail object into buf (its exact size).
func (w *s3Write) readTail(ctx context.Context, buf []byte) error {
	s := w.s
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.cfg.Bucket, Key: aws.String(w.st.Tail)})
	if err != nil {
		if isS3NotFound(err) {
			// Aborted (a DELETE or expiry removed the upload): the tail
			// went with it. Else the tail alone is gone: fall back.
			if _, lerr := s.client.ListParts(ctx, &s3.ListPartsInput{
				Bucket: &s.cfg.Bucket, Key: aws.String(w.u.Key), UploadId: aws.String(w.st.UploadID), MaxParts: aws.Int32(1),
			}); lerr != nil {
				if isS3Code(lerr, "NoSuchUpload") {
					return fmt.Errorf("pipeline: s3 tail %s: %w", w.st.Tail, ErrNoSuchUpload)
				}
				return s3Err(ctx, "list parts of "+w.u.Key, lerr)
			}
			// A tail from offset 0 needs no kept hash: the state there
			// is the empty one.
			if w.st.TailHash != nil || w.u.Offset == w.st.TailSize {
				// Committed state names a tail storage does not have: fall
				// back to the offset before it, instead of failing this
				// upload on every write from now on.
				fb := w.st
				fb.Tail, fb.TailSize, fb.TailHash, fb.Stale = "", 0, nil, nil
				return &TailLostError{Key: w.u.Key, Fallback: Progress{
					Offset: w.u.Offset - w.st.TailSize, HashState: w.st.TailHash, Storage: fb.encode(),
				}}
			}
			// Committed state refers to it: the upload was aborted.
			return fmt.Errorf("pipeline: s3 tail %s: %w", w.st.Tail, ErrNoSuchUpload)
		}
		return s3Err(ctx, "get tail "+w.st.Tail, err)
	}
	defer out.Body.Close()
	if _, err := io.ReadFull(out.Body, buf); err != nil {
		return s3Err(ctx, "read tail "+w.st.Tail, err)
	}
	return nil
}

// newTailKey returns a fresh tail key: random, so racing writers never
// share one and a committed tail is never overwritten.
func newTailKey(key string) string {
	var b [12]byte
	rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return tailPrefix(key) + hex.EncodeToString(b[:])
}

func crcHeader(crc uint32) *string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], crc)
	return aws.String(base64.StdEncoding.EncodeToString(b[:]))
}

// uploadPart stores b as part number num (settled: see s3_body.go) and
// returns its ETag and the CRC32C it sent (base64, for
// CompleteMultipartUpload).
func (s *S3Sink) uploadPart(ctx context.Context, key, uploadID string, num int32, b []byte, crc uint32) (etag, sum string, err error) {
	sumHdr := crcHeader(crc)
	out, err := settled(ctx, s3SettleGrace, b, func(ctx context.Context, body io.ReadSeeker) (*s3.UploadPartOutput, error) {
		return s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket:         &s.cfg.Bucket,
			Key:            aws.String(key),
			UploadId:       aws.String(uploadID),
			PartNumber:     aws.Int32(num),
			Body:           body,
			ContentLength:  aws.Int64(int64(len(b))),
			ChecksumCRC32C: sumHdr,
		}, unsignedPayload)
	})
	if err != nil {
		return "", "", s3Err(ctx, fmt.Sprintf("upload part %d of %s", num, key), err)
	}
	return aws.ToString(out.ETag), *sumHdr, nil
}

// putTail stores b as the tail object key (settled: see s3_body.go).
func (s *S3Sink) putTail(ctx context.Context, key string, b []byte, crc uint32) error {
	_, err := settled(ctx, s3SettleGrace, b, func(ctx context.Context, body io.ReadSeeker) (*s3.PutObjectOutput, error) {
		return s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:         &s.cfg.Bucket,
			Key:            aws.String(key),
			Body:           body,
			ContentLength:  aws.Int64(int64(len(b))),
			ChecksumCRC32C: crcHeader(crc),
		}, unsignedPayload)
	})
	return s3Err(ctx, "put tail "+key, err)
}
