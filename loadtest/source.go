package main

import (
	"github.com/roughy/ingest/internal/bytesize"

	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	rand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// openSource opens path, or makes (once) a random file of size bytes in
// the temp dir; bytes stream from disk (page cache), never held in memory.
// The made file is 1 MiB longer than an upload, so that uploads start at
// different offsets and no two assets need be alike.
func openSource(path string, size int64) (*os.File, error) {
	if path == "" {
		path = filepath.Join(os.TempDir(), "roughy-loadtest-"+strconv.FormatInt(size, 10)+".bin")
		if fi, err := os.Stat(path); err != nil || fi.Size() < size+sourceSlack {
			if err := generate(path, size+sourceSlack); err != nil {
				return nil, err
			}
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("loadtest: open source: %w", err)
	}
	return f, nil
}

// sourceSlack is how much longer than an upload a made source is.
const sourceSlack = 1 << 20

func generate(path string, size int64) error {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return fmt.Errorf("loadtest: create source: %w", err)
	}
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(time.Now().UnixNano()))
	w := bufio.NewWriterSize(f, 4<<20)
	_, err = io.CopyN(w, rand.NewChaCha8(seed), size)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("loadtest: write source: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("loadtest: rename source: %w", err)
	}
	return nil
}

func parseSize(v string) (int64, error) { return bytesize.Parse(v) }

// fmtSize is bytesize.Format with a "B" on plain byte counts.
func fmtSize(n int64) string {
	f := bytesize.Format(n)
	if f[len(f)-1] >= '0' && f[len(f)-1] <= '9' {
		f += "B"
	}
	return f
}
