package pipeline

import (
	"encoding/json"
	"fmt"
)

// S3 part plan: pure arithmetic, shared by S3Sink.Write, PartsFor and the
// plan's unit tests, so that the number of part numbers a write reserves is
// exactly the number it can use.
//
// The part size P is fixed when the upload is created:
// max(5 MiB, ceil(Length/5000)) rounded up to a whole MiB, with a deferred
// length counted as 50 GiB. Every part but the upload's last one holds at
// least P bytes, so an upload never has more than ceil(Length/P) <= 5000
// parts, and the other 5000 numbers of S3's 10,000 are slack for part
// numbers that interrupted writes reserved but never used (tusd
// #1247, "invalid part number 10001" after resumes).
//
// Layouts:
//
//   - "default": parts of max(P, 16 MiB), and the last part of a write
//     absorbs the write's remainder when that remainder is shorter than P
//     (so parts hold between P and max(P,16 MiB)+P-1 bytes). A write whose size is known therefore leaves a tail
//     object only when it carries fewer than P bytes in all, and no byte is
//     sent to S3 twice except those small tails. A chunked body (size
//     unknown) or a client that drops mid-part also leaves a tail.
//   - "equal": every part but the last holds exactly P bytes, as Cloudflare
//     R2 demands. The cost: a write that does not end on a multiple of P
//     leaves its remainder (up to P-1 bytes) as a tail object, which is
//     stored once as the tail (PUT), read back by the next write (GET) and
//     stored again in the part: with 64 MiB PATCHes and P = 5 MiB that is
//     on average about 2.5 MiB, i.e. ~4% more bytes written and ~4% read
//     back, plus one PUT and one GET per PATCH on the critical path.
//
// Both layouts reserve the same number of part numbers for a write:
// floor((tail+size)/P), plus one for a short last part when the write
// reaches the upload's length.
const (
	s3MinPartSize = 5 << 20
	s3PlanParts   = 5000
	s3MaxParts    = 10000
	s3Align       = 1 << 20
	// s3TargetPartSize is the size the default layout fills parts to when
	// a write carries enough bytes. Each part costs an S3 request and a
	// session-store commit, so 5 MiB parts made a 64 MiB PATCH 12 requests
	// and 12 commits (bench/RESULTS.md, S3 scenario); 16 MiB makes it 4.
	// Part numbers are still reserved per P (PartsFor), an upper bound.
	s3TargetPartSize = 16 << 20
)

// S3 layouts (S3Config.Layout).
const (
	// S3LayoutDefault folds a write's remainder into its last part.
	S3LayoutDefault = "default"
	// S3LayoutEqual makes every part but the last exactly the part size
	// (Cloudflare R2).
	S3LayoutEqual = "equal"
)

// s3PartSize returns the fixed part size of an upload of length bytes (-1:
// deferred, planned as MaxUploadLength).
func s3PartSize(length int64) int64 {
	if length < 0 {
		length = MaxUploadLength
	}
	p := max((length+s3PlanParts-1)/s3PlanParts, s3MinPartSize)
	return (p + s3Align - 1) / s3Align * s3Align
}

// s3WriteSize is how many bytes a write of size bytes (-1: unknown) at
// offset may carry: capped by MaxChunk and by the bytes left to length.
func s3WriteSize(length, offset, size int64) int64 {
	n := size
	if n < 0 || n > MaxChunk {
		n = MaxChunk
	}
	if length >= 0 {
		n = min(n, max(length-offset, 0))
	}
	return n
}

// s3PartsFor returns how many part numbers a write of size bytes (-1:
// unknown) can complete, given the upload's length and offset and the
// bytes of the committed tail (included in offset).
func s3PartsFor(length, offset, tail, partSize, size int64) int32 {
	n := s3WriteSize(length, offset, size)
	total := tail + n
	k := total / partSize
	if length >= 0 && offset+n == length && total%partSize != 0 {
		k++
	}
	return int32(k)
}

// s3BufferSize says how many bytes the next part buffer of a write should
// hold: carry bytes of the committed tail plus up to remaining more bytes
// of the body (an upper bound: the body may end earlier). 0 means the write
// is done.
func s3BufferSize(layout string, partSize, carry, remaining int64) int64 {
	avail := carry + remaining
	switch {
	case avail <= 0:
		return 0
	case avail < partSize:
		return avail
	case layout == S3LayoutEqual:
		return partSize
	}
	// Default layout: parts of s3TargetPartSize (or P when larger), and the
	// write's remainder folded into its last part: no tail.
	big := max(partSize, s3TargetPartSize)
	if avail < big+partSize {
		return avail
	}
	return big
}

// s3IsPart says whether a filled buffer of n bytes becomes a part (else a
// tail object): when it holds at least a part's worth, or when it ends the
// upload.
func s3IsPart(partSize, n int64, complete bool) bool {
	return n >= partSize || (complete && n > 0)
}

// s3State is S3Sink's storage state, saved with every commit
// (Upload.Storage).
type s3State struct {
	UploadID string `json:"upload_id"`
	PartSize int64  `json:"part_size"`
	// Tail is the key of the committed tail object holding bytes
	// [Offset-TailSize, Offset), "" when none.
	Tail     string `json:"tail,omitempty"`
	TailSize int64  `json:"tail_size,omitempty"`
	// TailHash is the upload's SHA-256 state at the tail's first byte
	// (Offset-TailSize): where the upload falls back to when the tail
	// object is gone (see TailLostError). Absent in states written
	// before it was kept; such an upload cannot fall back.
	TailHash []byte `json:"tail_hash,omitempty"`
	// Stale lists tail objects that committed state no longer refers to;
	// the next write deletes them. They are not deleted by the write that
	// replaced them because that write's commits may still be withheld
	// (Upload-Checksum) and then dropped.
	Stale []string `json:"stale,omitempty"`
	// Checksum is the algorithm the multipart upload was created with
	// ("CRC32C", full-object type), "" for uploads created before: S3 then
	// checks each part's CRC32C against the one declared at creation and
	// computes the object's CRC32C from them, instead of a CRC64NVME of
	// its own, and Complete must name every part's checksum.
	Checksum string `json:"checksum,omitempty"`
	// Put marks an upload stored whole with one PutObject (S3Sink.Put):
	// its object exists already and there is no multipart upload to
	// complete or abort (UploadID is s3PutUploadID).
	Put bool `json:"put,omitempty"`
}

func decodeS3State(b []byte) (s3State, error) {
	var st s3State
	if len(b) == 0 {
		return st, fmt.Errorf("pipeline: s3: empty storage state")
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("pipeline: s3: decode storage state: %w", err)
	}
	if st.UploadID == "" || st.PartSize < s3MinPartSize {
		return st, fmt.Errorf("pipeline: s3: storage state without upload id or part size")
	}
	return st, nil
}

func (st s3State) encode() []byte {
	b, err := json.Marshal(st)
	if err != nil {
		// A struct of strings and ints always marshals.
		panic(err)
	}
	return b
}
