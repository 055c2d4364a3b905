package main

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"io"
	"math/rand/v2"
)

// generator is the upload's bytes: a ChaCha8 stream from a fixed seed,
// made on the fly because a 50 GiB source file and the 50 GiB the server
// stores do not both fit on the disk. It hashes what it makes, so the
// client's SHA-256 is over exactly the bytes it sent.
type generator struct {
	rng *rand.ChaCha8
	sum hash.Hash
}

func newGenerator(seed uint64) *generator {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return &generator{rng: rand.NewChaCha8(s), sum: sha256.New()}
}

// fill writes the next len(p) bytes of the stream into p and hashes them.
// The stream does not depend on how it is cut into buffers.
func (g *generator) fill(p []byte) {
	_, _ = g.rng.Read(p) // ChaCha8.Read always fills p
	g.sum.Write(p)
}

// sha256 returns the hex digest of every byte made so far.
func (g *generator) sha256() []byte { return g.sum.Sum(nil) }

// chunkAt serves one generated chunk as the io.ReaderAt that
// tusclient.Patch reads an upload offset range from: byte off of the
// upload is buf[off-base].
type chunkAt struct {
	buf  []byte
	base int64
}

func (c chunkAt) ReadAt(p []byte, off int64) (int, error) {
	i := off - c.base
	if i < 0 || i >= int64(len(c.buf)) {
		return 0, io.EOF
	}
	n := copy(p, c.buf[i:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
