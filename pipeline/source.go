package pipeline

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/subtle"
	"encoding"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// Source is a chunk's body as a sink reads it: every Read updates the
// whole-object SHA-256 and the chunk's Upload-Checksum over the bytes just
// read, while they are still in cache, so no byte is read twice.
type Source struct {
	r       io.Reader
	whole   hash.Hash // SHA-256 of the upload from byte 0
	check   hash.Hash // Upload-Checksum of this chunk, or nil
	want    []byte
	n       int64 // bytes read from r
	limit   int64 // bytes r may yield; one more is ErrTooLarge
	base    int64 // upload offset of the first byte
	tooLong bool
	// With sumCRC, crc is the running CRC32C (S3's part checksum) of the
	// bytes read since the sink set it.
	sumCRC bool
	crc    uint32
}

// hashBlock is how much of a read goes through every digest before the
// next block: the kernel's copy of a read can be a MiB or more, and a
// second and third pass over 64 KiB find it in L1/L2 cache.
const hashBlock = 64 << 10

// hash runs p through every digest the source keeps.
func (s *Source) hash(p []byte) {
	for len(p) > 0 {
		b := p[:min(len(p), hashBlock)]
		s.whole.Write(b)
		if s.check != nil {
			s.check.Write(b)
		}
		if s.sumCRC {
			s.crc = crc32.Update(s.crc, castagnoli, b)
		}
		p = p[len(b):]
	}
}

func newHash(alg string) (hash.Hash, error) {
	switch alg {
	case "sha256":
		return newSHA256(), nil
	case "sha1":
		return sha1.New(), nil
	case "md5":
		return md5.New(), nil
	}
	return nil, fmt.Errorf("pipeline: unsupported checksum algorithm %q", alg)
}

// SupportedChecksums lists the Upload-Checksum algorithms, for the
// Tus-Checksum-Algorithm header.
const SupportedChecksums = "sha256,sha1,md5"

// CheckAlgorithm reports whether alg is a supported checksum algorithm.
func CheckAlgorithm(alg string) bool {
	_, err := newHash(alg)
	return err == nil
}

// ResumeHash returns a SHA-256 whose state is the marshaled state, or a new
// one when state is empty.
func ResumeHash(state []byte) (hash.Hash, error) {
	h := newSHA256()
	if len(state) == 0 {
		return h, nil
	}
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return nil, fmt.Errorf("pipeline: resume sha256 state: %w", err)
	}
	return h, nil
}

// MarshalHash returns h's state (h from ResumeHash).
func MarshalHash(h hash.Hash) []byte {
	b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		// crypto/sha256 never fails to marshal.
		panic(err)
	}
	return b
}

// SumHex returns the hex SHA-256 of the bytes whose state is given.
func SumHex(state []byte) (string, error) {
	h, err := ResumeHash(state)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// newSource wraps body for a chunk of size bytes (-1: unknown) at u.Offset.
func newSource(body io.Reader, u Upload, size int64, sum *Checksum) (*Source, error) {
	whole, err := ResumeHash(u.HashState)
	if err != nil {
		return nil, err
	}
	s := &Source{r: body, whole: whole, base: u.Offset}
	s.limit = MaxChunk
	if size >= 0 && size < s.limit {
		s.limit = size
	}
	if u.Length >= 0 && u.Length-u.Offset < s.limit {
		s.limit = u.Length - u.Offset
	}
	if sum != nil {
		if s.check, err = newHash(sum.Algorithm); err != nil {
			return nil, err
		}
		s.want = sum.Sum
	}
	return s, nil
}

// NewSource is newSource for sinks' tests and benchmarks.
func NewSource(body io.Reader, u Upload, size int64) (*Source, error) {
	return newSource(body, u, size, nil)
}

// Read reads from the body and hashes what it read. Past the chunk's limit
// it returns ErrTooLarge.
func (s *Source) Read(p []byte) (int, error) {
	n, err := s.readRaw(p)
	if n > 0 {
		s.hash(p[:n])
	}
	return n, err
}

// readRaw is Read without hashing: a sink that hashes in another
// goroutine calls hash on the bytes itself, in order. readRaw and hash
// touch disjoint fields, so the two may run concurrently.
func (s *Source) readRaw(p []byte) (int, error) {
	if s.n >= s.limit {
		// Probe for one more byte: a body longer than allowed is an error,
		// not a silent truncation.
		var one [1]byte
		n, err := s.r.Read(one[:])
		if n > 0 {
			s.tooLong = true
			return 0, ErrTooLarge
		}
		if err == nil {
			err = io.EOF
		}
		return 0, err
	}
	if rem := s.limit - s.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	return n, err
}

// Offset is the upload offset just past the last byte read.
func (s *Source) Offset() int64 { return s.base + s.n }

// HashState is the marshaled whole-object SHA-256 state at Offset. Sinks
// take it when a part is full, before reading on.
func (s *Source) HashState() []byte { return MarshalHash(s.whole) }

func (s *Source) checksumOK() bool {
	if s.check == nil {
		return true
	}
	return subtle.ConstantTimeCompare(s.check.Sum(nil), s.want) == 1
}

func (s *Source) release() {}
