package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/roughy/ingest/bench/internal/benchproc"
)

// source is the random file every upload reads from.
type source struct {
	f    *os.File
	path string
	size int64

	mu     sync.Mutex
	hashes map[[2]int64]string // (offset, length) → hex SHA-256
}

// openSource opens path (or <work>/source-<size>.bin), generating it with
// random bytes when it is missing or shorter than size. The file is written
// through a small buffer, never held in memory.
func openSource(work, path string, size int64) (*source, error) {
	if path == "" {
		path = filepath.Join(work, "source-"+benchproc.FormatSize(size)+".bin")
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() < size {
		if err := generate(path, size); err != nil {
			return nil, err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ingestbench: open source: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ingestbench: stat source: %w", err)
	}
	return &source{f: f, path: path, size: fi.Size(), hashes: map[[2]int64]string{}}, nil
}

func generate(path string, size int64) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("ingestbench: create source: %w", err)
	}
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(size))
	rng := rand.NewChaCha8(seed)
	w := bufio.NewWriterSize(f, 4<<20)
	if _, err := io.CopyN(w, rng, size); err != nil {
		f.Close()
		return fmt.Errorf("ingestbench: write source: %w", err)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("ingestbench: write source: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("ingestbench: close source: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("ingestbench: rename source: %w", err)
	}
	return nil
}

// sha256Of returns the hex SHA-256 of src[off:off+n], cached.
func (s *source) sha256Of(off, n int64) (string, error) {
	k := [2]int64{off, n}
	s.mu.Lock()
	h, ok := s.hashes[k]
	s.mu.Unlock()
	if ok {
		return h, nil
	}
	d := sha256.New()
	if _, err := io.Copy(d, io.NewSectionReader(s.f, off, n)); err != nil {
		return "", fmt.Errorf("ingestbench: hash source: %w", err)
	}
	h = hex.EncodeToString(d.Sum(nil))
	s.mu.Lock()
	s.hashes[k] = h
	s.mu.Unlock()
	return h, nil
}

// sectionBase spreads upload i of n uploads of size bytes over the source.
func (s *source) sectionBase(i int, size int64) int64 {
	room := s.size - size
	if room <= 0 {
		return 0
	}
	return (int64(i) * size) % (room + 1)
}

// machineInfo describes where the figures come from.
type machineInfo struct {
	nproc     int
	cpu       string
	kernel    string
	goVersion string
	memTotal  string
	tusd      string
	versitygw string
	commit    string
}

func describeMachine(o *options) machineInfo {
	m := machineInfo{nproc: runtime.NumCPU(), goVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
		if strings.Contains(string(b), " sha_ni") {
			m.cpu += " (sha_ni)"
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		_, v, _ := strings.Cut(line, ":")
		m.memTotal = strings.TrimSpace(v)
	}
	m.tusd = moduleVersion(o.tusdBin, "github.com/tus/tusd/v2")
	m.versitygw = moduleVersion(o.vgwBin, "github.com/versity/versitygw")
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "status", "--porcelain").Output(); err == nil && len(st) > 0 {
			m.commit += " + uncommitted changes"
		}
	}
	return m
}

// moduleVersion reads the main module version of a Go binary.
func moduleVersion(bin, module string) string {
	out, err := exec.CommandContext(context.Background(), "go", "version", "-m", bin).Output()
	if err != nil {
		return "unknown"
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "mod" && f[1] == module {
			return f[2]
		}
	}
	return "unknown"
}
