package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// localObject is a stored file opened for reading.
type localObject struct {
	*os.File
	size int64
	path string
}

func (o *localObject) Size() int64  { return o.size }
func (o *localObject) Path() string { return o.path }

// Open opens the object's file for reading; ErrNoSuchUpload if it is gone.
func (s *LocalSink) Open(_ context.Context, key string) (Object, error) {
	path, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("pipeline: local open %s: %w", key, ErrNoSuchUpload)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: local open %s: %w", storageErr(err), key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: local stat %s: %w", storageErr(err), key, err)
	}
	return &localObject{File: f, size: fi.Size(), path: path}, nil
}

// URL is "": the proxy serves local objects itself.
func (s *LocalSink) URL(context.Context, string, time.Duration) (string, error) {
	return "", nil
}

// DownloadURL is "": the proxy serves local objects itself, headers
// included.
func (s *LocalSink) DownloadURL(context.Context, string, time.Duration, ResponseHeaders) (string, error) {
	return "", nil
}

// Ping checks that the directory exists and is writable.
func (s *LocalSink) Ping(_ context.Context) error {
	f, err := os.CreateTemp(s.dir, ".ping-*")
	if err != nil {
		return fmt.Errorf("%w: local ping: %w", storageErr(err), err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("%w: local ping: %w", storageErr(err), err)
	}
	return nil
}
