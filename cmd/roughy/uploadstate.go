package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// fingerprint identifies one version of one file for one endpoint.
func fingerprint(absPath string, size int64, mtime time.Time, endpoint string) string {
	return fmt.Sprintf("%s|%d|%d|%s", absPath, size, mtime.UnixNano(), endpoint)
}

// stateEntry is a remembered unfinished upload.
type stateEntry struct {
	URL       string    `json:"url"`
	AssetID   string    `json:"asset_id"`
	File      string    `json:"file"`
	Size      int64     `json:"size"`
	CreatedAt time.Time `json:"created_at"`
}

// stateFile is the JSON map of unfinished uploads, keyed by fingerprint.
// Every change rewrites it atomically.
type stateFile struct{ path string }

func (s stateFile) load() (map[string]stateEntry, error) {
	m := map[string]stateEntry{}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("roughy: state file: %w", err)
	}
	if len(b) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("roughy: state file %s: %w", s.path, err)
	}
	return m, nil
}

func (s stateFile) save(m map[string]stateEntry) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("roughy: state file: %w", err)
	}
	if err := writeFileAtomic(s.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("roughy: state file: %w", err)
	}
	return nil
}

// lock serializes state file updates between concurrent "roughy upload"
// processes (a read-modify-write would otherwise lose entries).
func (s stateFile) lock() (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return nil, fmt.Errorf("roughy: state file: %w", err)
	}
	f, err := os.OpenFile(s.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("roughy: state file lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("roughy: state file lock: %w", err)
	}
	return func() { f.Close() }, nil // closing releases the flock
}

func (s stateFile) get(fp string) (stateEntry, bool, error) {
	m, err := s.load()
	if err != nil {
		return stateEntry{}, false, err
	}
	e, ok := m[fp]
	return e, ok, nil
}

func (s stateFile) put(fp string, e stateEntry) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	m, err := s.load()
	if err != nil {
		m = map[string]stateEntry{} // a corrupt file is replaced
	}
	m[fp] = e
	return s.save(m)
}

func (s stateFile) remove(fp string) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	m, err := s.load()
	if err != nil {
		return err
	}
	if _, ok := m[fp]; !ok {
		return nil
	}
	delete(m, fp)
	return s.save(m)
}
