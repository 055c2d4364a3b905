package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/roughy/ingest/pipeline"
	"github.com/valyala/fasthttp"
)

// Integrity digests (RFC 9530) of the draft's requests, sha-256 only
// (other algorithms are ignored, as RFC 9530 allows):
//   - Content-Digest covers one request's content. It is the TUS
//     checksum extension by another name: the pipeline verifies it while
//     the content streams and commits nothing of a mismatching request
//     (400, the offset unchanged). A request with one is therefore one
//     write of at most max-append-size (64 MiB).
//   - Repr-Digest covers the whole upload, so only the request that
//     completes the upload can be checked against it (on other requests
//     it is ignored, as the draft allows). The pipeline holds the commits
//     of such a request and makes the one that completes the upload only
//     when the upload's SHA-256, computed while the bytes streamed, is the
//     digest (pipeline.Chunk.Repr): on a mismatch the request's bytes are
//     not committed, the answer is 400 and the upload stays resumable at
//     its old offset. A request without content is checked before the
//     length it implies is set (that would make the upload whole), and
//     an empty creation before anything is created. A request of more
//     than 64 MiB is written in segments (draftProtocol.write): only the last one
//     is held, the earlier ones stay committed. With the length unknown
//     (a chunked body without Upload-Length) the pipeline takes the end
//     of a segment's body as the end of the upload: before MaxChunk, or
//     at it when the segment, reading one byte ahead, finds the body
//     ended there (segment.Ended). upload.Service.CheckRepr verifies again before the
//     upload is completed; should bytes this request stored ever reach
//     it unverified (a body that ended after its last segment was
//     committed), a mismatch fails the upload and deletes it: its bytes
//     cannot be replaced (the draft: "consider the upload failed").

// draftDigests are a request's sha-256 digests, nil when not sent.
type draftDigests struct {
	content *pipeline.Checksum
	repr    []byte
}

var (
	errDigestMismatch = codeDigestMismatch.err()
	errReprMismatch   = codeReprDigestMismatch.err()
	errReprFailed     = codeReprDigestMismatch.with(
		"Repr-Digest does not match the uploaded representation, whose bytes were already stored; the upload failed and was deleted")
	errDigestTooLong = codeChunkTooLarge.with(
		"a request with Content-Digest carries at most max-append-size (67108864 bytes)")
)

// parseDigests reads Content-Digest and Repr-Digest.
func parseDigests(h *fasthttp.RequestHeader) (draftDigests, error) {
	var d draftDigests
	for _, name := range []string{"Content-Digest", "Repr-Digest"} {
		raw, ok, err := single(h, name, codeInvalidDigest)
		if err != nil {
			return d, err
		}
		if !ok {
			continue
		}
		sum, err := sha256Member(raw)
		if err != nil {
			return d, codeInvalidDigest.with(name + ": " + err.Error())
		}
		if sum == nil {
			continue
		}
		if name == "Content-Digest" {
			d.content = &pipeline.Checksum{Algorithm: "sha256", Sum: sum}
		} else {
			d.repr = sum
		}
	}
	return d, nil
}

// sha256Member returns the sha-256 member of a digest Dictionary
// (`sha-256=:<base64>:`, parameters ignored), nil when there is none. A
// Dictionary that names sha-256 twice with different values is refused:
// a structured-field parser keeps the last member and ours would keep the
// first, so the client and the server could check different digests.
func sha256Member(v string) ([]byte, error) {
	var found []byte
	for member := range strings.SplitSeq(v, ",") {
		key, val, ok := strings.Cut(strings.TrimSpace(member), "=")
		if !ok || strings.TrimSpace(key) != "sha-256" {
			continue
		}
		val, _, _ = strings.Cut(strings.TrimSpace(val), ";")
		b64, open := strings.CutPrefix(val, ":")
		b64, closed := strings.CutSuffix(b64, ":")
		if !open || !closed {
			return nil, errors.New("sha-256 must be a byte sequence (:base64:)")
		}
		sum, err := base64.StdEncoding.Strict().DecodeString(b64)
		if err != nil || len(sum) != 32 {
			return nil, errors.New("sha-256 must be 32 bytes in base64")
		}
		if found != nil && !bytes.Equal(found, sum) {
			return nil, errors.New("sha-256 is given twice with different values")
		}
		found = sum
	}
	return found, nil
}

// emptyRepr reports whether repr is the SHA-256 of no bytes.
func emptyRepr(repr []byte) bool {
	sum := sha256.Sum256(nil)
	return bytes.Equal(repr, sum[:])
}

// digestError names a digest mismatch of the pipeline as the draft's
// problem; other errors pass as they are.
func digestError(err error) error {
	switch {
	case errors.Is(err, pipeline.ErrChecksumMismatch):
		return fmt.Errorf("%w: %w", errDigestMismatch, err)
	case errors.Is(err, pipeline.ErrReprDigestMismatch):
		return fmt.Errorf("%w: %w", errReprMismatch, err)
	}
	return err
}
