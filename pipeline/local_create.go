package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Create checks the key and makes the upload's directory; it makes no
// file. The first Write makes the file and syncs it and its directory
// entry before the commit that counts its bytes, and Complete makes the
// file of an empty upload. Making it here cost every creation an fsync of
// an empty file and one of its directory, about half of a POST's time with
// many uploads at once, for a file that holds nothing a crash could lose.
func (s *LocalSink) Create(_ context.Context, u Upload) ([]byte, error) {
	path, err := s.path(u.Key)
	if err != nil {
		return nil, err
	}
	if err := s.mkdirDurable(filepath.Dir(path)); err != nil {
		return nil, err
	}
	// What would make the first write's create fail for good (something
	// not a file in the file's place) fails the creation, as making the
	// file here did: one stat, no write.
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: local create %s: %s is not a file", ErrStorage, u.Key, fi.Mode().Type())
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: local create %s: %w", storageErr(err), u.Key, err)
	}
	return nil, nil
}

// openForWrite opens the file of u for a Write. A Write at offset 0 makes
// it if missing (its directory entry is then not durable yet: the Write
// syncs it before its first commit); at a later offset a missing file lost
// committed bytes (ErrNoSuchUpload).
func (s *LocalSink) openForWrite(path string, u Upload) (*os.File, error) {
	if u.Offset > 0 {
		return openExisting(path, u.Key)
	}
	// One open that makes the file, not a failed open first: the first
	// write is most uploads' only one. Only a missing directory takes the
	// slow way.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o640)
	if errors.Is(err, fs.ErrNotExist) {
		if err := s.mkdirDurable(filepath.Dir(path)); err != nil {
			return nil, err
		}
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o640)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: local open %s: %w", storageErr(err), u.Key, err)
	}
	return f, nil
}

// openExisting opens the file of key for writing; a missing one is
// ErrNoSuchUpload.
func openExisting(path, key string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("pipeline: local %s: %w", key, ErrNoSuchUpload)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: local open %s: %w", storageErr(err), key, err)
	}
	return f, nil
}

// createEmpty makes path an empty file, durable with its directory entry.
func (s *LocalSink) createEmpty(path, key string) error {
	parent := filepath.Dir(path)
	if err := s.mkdirDurable(parent); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("%w: local create %s: %w", storageErr(err), key, err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w: local create %s: %w", storageErr(err), key, err)
	}
	return s.dirs.sync(parent)
}

// mkdirDurable creates dir and its missing parents below s.dir, fsyncing
// the parent of each directory it created.
func (s *LocalSink) mkdirDurable(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	// Find the first missing ancestor so its parent gets synced too.
	top := dir
	for {
		up := filepath.Dir(top)
		if up == top || up == s.dir {
			break
		}
		if _, err := os.Stat(up); err == nil {
			break
		}
		top = up
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("%w: local mkdir: %w", storageErr(err), err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if err := syncDir(filepath.Dir(d)); err != nil {
			return err
		}
		if d == top {
			return nil
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("%w: local sync dir: %w", storageErr(err), err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w: local sync dir %s: %w", storageErr(err), dir, err)
	}
	return nil
}
