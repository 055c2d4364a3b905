//go:build !linux

package pipeline

import (
	"errors"
	"os"
)

// startWriteback is a no-op where sync_file_range does not exist.
func startWriteback(*os.File, int64, int64) {}

// syncData makes f's data durable.
func syncData(f *os.File) error { return f.Sync() }

// openDirect: no O_DIRECT here; every write goes through the page cache.
func openDirect(string) (*os.File, error) {
	return nil, errors.ErrUnsupported
}

// FreeSpace is not implemented here.
func (s *LocalSink) FreeSpace() (int64, error) { return 0, errors.ErrUnsupported }
