package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	rand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

func parseSize(v string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if s, ok := strings.CutSuffix(v, u.suf); ok {
			v, mult = s, u.m
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("loadtest: bad size %q: %w", v, err)
	}
	return n * mult, nil
}

func fmtSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return strconv.FormatInt(n, 10) + "B"
}
