//go:build linux

package pipeline

import (
	"fmt"
	"os"
	"syscall"
)

// syncFileRangeWrite is SYNC_FILE_RANGE_WRITE (linux/fs.h): start
// write-back of dirty pages in the range, do not wait for it.
const syncFileRangeWrite = 0x2

// startWriteback asks the kernel to start writing [off, off+n) of f to
// disk without waiting, so the write-back overlaps with reading the rest
// of the body and the fsync at the next commit has little left to flush.
// It is a hint: errors are ignored (the fsync reports real ones).
func startWriteback(f *os.File, off, n int64) {
	if !writebackHint {
		return
	}
	_ = syscall.SyncFileRange(int(f.Fd()), off, n, syncFileRangeWrite)
}

// syncData makes f's data and size durable (fdatasync: no inode times).
func syncData(f *os.File) error {
	return syscall.Fdatasync(int(f.Fd()))
}

// openDirect opens path for writes that bypass the page cache.
func openDirect(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0)
}

// FreeSpace returns the bytes of the sink's file system that an
// unprivileged writer may still use (statfs f_bavail).
func (s *LocalSink) FreeSpace() (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err != nil {
		return 0, fmt.Errorf("%w: local statfs: %w", ErrStorage, err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}
