package pipeline

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Completion checks. The upload's SHA-256 is computed from the bytes as
// they pass through the proxy, so it says nothing about what storage
// holds: a write that left bytes out of the parts (a tail never made a
// part) would still carry the right hash. Complete therefore checks the
// plan before it touches anything and the object after S3 built it.

// checkPlan refuses a completion whose committed parts (sorted by Offset)
// do not cover [0, u.Length) exactly, one after the other, or whose state
// still names a tail (bytes not in any part).
func checkPlan(u Upload, st s3State, parts []Part) error {
	if u.Length < 0 {
		return fmt.Errorf("pipeline: complete %s: length not known: %w", u.Key, ErrIncomplete)
	}
	if st.TailSize > 0 || st.Tail != "" {
		return fmt.Errorf("pipeline: complete %s: %d bytes still in tail %s: %w", u.Key, st.TailSize, st.Tail, ErrIncomplete)
	}
	var at int64
	for _, p := range parts {
		if p.Offset != at || p.Size <= 0 {
			return fmt.Errorf("pipeline: complete %s: part %d holds [%d, %d), expected it at %d: %w",
				u.Key, p.Number, p.Offset, p.Offset+p.Size, at, ErrIncomplete)
		}
		at += p.Size
	}
	if at != u.Length {
		return fmt.Errorf("pipeline: complete %s: parts hold %d bytes of %d: %w", u.Key, at, u.Length, ErrIncomplete)
	}
	return nil
}

// verifyObject checks the completed object key against what was promised:
// its size, and its full-object CRC32C when S3 reports one and every part
// carries its own (the object's is then the parts' combined). One
// HeadObject per completed upload.
func (s *S3Sink) verifyObject(ctx context.Context, key string, size int64, parts []Part) error {
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: &s.cfg.Bucket, Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return s3Err(ctx, "verify "+key, err)
	}
	if got := aws.ToInt64(head.ContentLength); got != size {
		return fmt.Errorf("pipeline: verify %s: object holds %d bytes, upload has %d: %w", key, got, size, ErrIncomplete)
	}
	got := aws.ToString(head.ChecksumCRC32C)
	if got == "" || head.ChecksumType == types.ChecksumTypeComposite {
		return nil
	}
	want, ok := partsCRC32C(parts)
	if !ok {
		return nil
	}
	if enc := base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, want)); got != enc {
		return fmt.Errorf("pipeline: verify %s: object CRC32C %s, parts make %s: %w", key, got, enc, ErrIncomplete)
	}
	return nil
}

// partsCRC32C is the CRC32C of the parts' bytes in order, combined from
// each part's own; ok is false when a part has none (uploads created
// before parts carried one, parts copied by concatenation).
func partsCRC32C(parts []Part) (crc uint32, ok bool) {
	for _, p := range parts {
		b, err := base64.StdEncoding.DecodeString(p.Checksum)
		if err != nil || len(b) != 4 {
			return 0, false
		}
		crc = crc32cCombine(crc, binary.BigEndian.Uint32(b), p.Size)
	}
	return crc, true
}

// crc32cPoly is the Castagnoli polynomial, bit-reversed.
const crc32cPoly = 0x82f63b78

// crc32cCombine returns the CRC32C of A followed by B from crcA, crcB
// and len(B): crcA is shifted by len(B) zero bytes (multiplied by
// x^(8·lenB) modulo the polynomial) and crcB added. The pre- and
// post-conditioning of the CRC cancel out in this form.
func crc32cCombine(crcA, crcB uint32, lenB int64) uint32 {
	return gf2Mul(xPow8n(lenB), crcA) ^ crcB
}

// gf2Mul multiplies a and b modulo the polynomial, both in the CRC's
// reflected bit order (bit 31 is x^0).
func gf2Mul(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
		}
		if b&1 != 0 {
			b = b>>1 ^ crc32cPoly
		} else {
			b >>= 1
		}
	}
	return p
}

// xPow8n is x^(8·n) modulo the polynomial, by repeated squaring.
func xPow8n(n int64) uint32 {
	p := uint32(1) << 31  // x^0
	sq := uint32(1) << 23 // x^8: one byte
	for ; n > 0; n >>= 1 {
		if n&1 != 0 {
			p = gf2Mul(sq, p)
		}
		sq = gf2Mul(sq, sq)
	}
	return p
}
