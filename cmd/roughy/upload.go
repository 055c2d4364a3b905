package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// uploadOptions configure one run of the upload client.
type uploadOptions struct {
	Endpoint    string
	Key         string
	ChunkSize   int64
	Type        string // "video" or "audio"; guessed when empty
	ContentType string // guessed when empty
	StateFile   string
	// Retries is how many consecutive failures end the upload (the state
	// file keeps it resumable).
	Retries     int
	BackoffBase time.Duration
	BackoffMax  time.Duration
	Checksum    bool
	Progress    io.Writer // nil: no progress bar
	// sent, when set, is told the acknowledged offset plus the bytes of
	// the PATCH in flight (tests use it to interrupt an upload).
	sent func(int64)
}

// uploadResult is a finished upload.
type uploadResult struct {
	AssetID string
	URL     string
	// Resumed is the offset the upload continued from (0: fresh).
	Resumed int64
	// Asset is the asset's JSON from the assets API (nil when the
	// endpoint is not Roughy's).
	Asset []byte
}

func (c cli) upload(ctx context.Context, args []string) error {
	fl := newFlagSet("upload", "upload FILE [flags]", c.stderr)
	endpoint := fl.String("endpoint", "http://127.0.0.1:8080/api/v1/assets/upload-resumable", "TUS endpoint")
	key := fl.String("key", "", "API key (default: <data-dir>/dev-api-key)")
	dataDir := fl.String("data-dir", "./data", "where to find dev-api-key when --key is not given")
	chunk := sizeFlag(fl, "chunk-size", 50<<20, "bytes per PATCH (at most 64MiB)")
	typ := choiceFlag(fl, "type", "", "asset type (default: guessed from the file)", "", "video", "audio")
	contentType := fl.String("content-type", "", "MIME type (default: guessed from the file)")
	stateFile := fl.String("state-file", "", "where unfinished uploads are remembered (default ~/.cache/roughy/uploads.json)")
	retries := fl.Int("retries", 10, "consecutive failures before giving up (run again to resume)")
	checksum := fl.Bool("checksum", true, "send Upload-Checksum (sha256) with every PATCH")
	quiet := fl.Bool("quiet", false, "no progress bar")
	pos, err := parseArgs(fl, args, c.lookup)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: roughy upload FILE [flags]", errUsage)
	}
	if *chunk <= 0 || *chunk > 64<<20 {
		return fmt.Errorf("%w: --chunk-size must be between 1 byte and 64MiB", errUsage)
	}
	opts := uploadOptions{
		Endpoint: *endpoint, Key: *key, ChunkSize: *chunk, Type: *typ, ContentType: *contentType,
		StateFile: *stateFile, Retries: *retries, Checksum: *checksum,
		BackoffBase: 500 * time.Millisecond, BackoffMax: 30 * time.Second,
	}
	if !*quiet {
		opts.Progress = c.stderr
	}
	if opts.Key == "" {
		b, err := os.ReadFile(filepath.Join(*dataDir, "dev-api-key"))
		if err != nil {
			return fmt.Errorf("%w: no --key (ROUGHY_KEY) and no dev key: %w", errUsage, err)
		}
		opts.Key = strings.TrimSpace(string(b))
	}
	if opts.StateFile == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("roughy: state file: %w (set --state-file)", err)
		}
		opts.StateFile = filepath.Join(dir, "roughy", "uploads.json")
	}

	sigCtx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := runUpload(sigCtx, opts, pos[0], c.stderr)
	if err != nil {
		if sigCtx.Err() != nil && ctx.Err() == nil {
			return fmt.Errorf("%w: the upload is saved in %s; run the same command again to resume", errInterrupted, opts.StateFile)
		}
		return err
	}
	fmt.Fprintln(c.stdout, res.AssetID)
	if res.Asset != nil {
		fmt.Fprintf(c.stdout, "%s\n", res.Asset)
	}
	return nil
}

// runUpload uploads path, resuming an earlier unfinished upload of the
// same file (same path, size and modification time) to the same endpoint.
// Messages go to logw.
func runUpload(ctx context.Context, opts uploadOptions, path string, logw io.Writer) (uploadResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return uploadResult{}, fmt.Errorf("roughy: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return uploadResult{}, fmt.Errorf("roughy: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return uploadResult{}, fmt.Errorf("roughy: %s is not a regular file", path)
	}
	size := fi.Size()
	abs, err := filepath.Abs(path)
	if err != nil {
		return uploadResult{}, fmt.Errorf("roughy: %w", err)
	}
	fp := fingerprint(abs, size, fi.ModTime(), opts.Endpoint)
	state := stateFile{path: opts.StateFile}
	cl := newTUSClient(opts.Key)
	rt := retrier{opts: opts, logw: logw}

	var res uploadResult
	offset := int64(-1)
	if e, ok, err := state.get(fp); err != nil {
		fmt.Fprintf(logw, "roughy: warning: %v (starting a new upload)\n", err)
	} else if ok {
		err := rt.do(ctx, func() error {
			off, length, err := cl.offset(ctx, e.URL)
			if err == nil && length >= 0 && length != size {
				return fmt.Errorf("%w: stored upload has length %d, file has %d", errPermanent, length, size)
			}
			offset = off
			return err
		})
		switch {
		case err == nil:
			res = uploadResult{AssetID: e.AssetID, URL: e.URL, Resumed: offset}
			fmt.Fprintf(logw, "resuming %s at %d of %d bytes\n", e.URL, offset, size)
		case ctx.Err() != nil:
			return uploadResult{}, ctx.Err()
		case gone(err) || errors.Is(err, errPermanent):
			// Only a vanished or mismatched upload starts over; other
			// failures (a 401, say) keep it for a later run.
			fmt.Fprintf(logw, "roughy: earlier upload cannot be resumed (%v); starting over\n", err)
			offset = -1
			if err := state.remove(fp); err != nil {
				return uploadResult{}, err
			}
		default:
			return uploadResult{}, err
		}
	}

	if offset < 0 {
		meta, err := metadataFor(f, abs, opts)
		if err != nil {
			return uploadResult{}, err
		}
		var cr created
		err = rt.do(ctx, func() error {
			var err error
			cr, err = cl.create(ctx, opts.Endpoint, size, meta)
			return err
		})
		if err != nil {
			return uploadResult{}, err
		}
		res = uploadResult{AssetID: cr.AssetID, URL: cr.URL}
		offset = 0
		// Remember the upload before the first byte goes out, so a crash
		// anywhere after this point resumes instead of starting over.
		if err := state.put(fp, stateEntry{URL: cr.URL, AssetID: cr.AssetID, File: abs, Size: size, CreatedAt: time.Now().UTC()}); err != nil {
			return uploadResult{}, err
		}
	}

	bar := newProgressBar(opts.Progress, size, offset)
	acked := offset
	needHead := false
	failures := 0
	for acked < size {
		if needHead {
			off, _, err := cl.offset(ctx, res.URL)
			if err != nil {
				if err := rt.failed(ctx, &failures, err); err != nil {
					bar.finish()
					return uploadResult{}, err
				}
				continue
			}
			acked, needHead = off, false
			bar.set(acked)
			continue
		}
		n := min(opts.ChunkSize, size-acked)
		start := acked
		newOff, err := cl.patch(ctx, res.URL, f, start, n, opts.Checksum, func(sent int64) {
			bar.set(start + sent)
			if opts.sent != nil {
				opts.sent(start + sent)
			}
		})
		if err != nil {
			bar.set(acked)
			needHead = true
			if err := rt.failed(ctx, &failures, err); err != nil {
				bar.finish()
				if gone(err) {
					state.remove(fp)
				}
				return uploadResult{}, err
			}
			continue
		}
		failures = 0
		acked = newOff
		bar.set(acked)
		bar.chunkDone()
	}
	bar.finish()

	if err := state.remove(fp); err != nil {
		fmt.Fprintf(logw, "roughy: warning: %v\n", err)
	}
	err = rt.do(ctx, func() error {
		var err error
		res.Asset, err = cl.asset(ctx, opts.Endpoint, res.AssetID)
		return err
	})
	if err != nil {
		// The bytes are all stored; only the summary is missing.
		fmt.Fprintf(logw, "roughy: uploaded, but reading the asset failed: %v\n", err)
	}
	return res, nil
}

// retrier applies the retry policy: retryable failures wait with
// exponential backoff (or the server's Retry-After), up to opts.Retries
// in a row.
type retrier struct {
	opts uploadOptions
	logw io.Writer
}

// do runs fn until it succeeds, fails for good, or fails too often.
func (r retrier) do(ctx context.Context, fn func() error) error {
	failures := 0
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if err := r.failed(ctx, &failures, err); err != nil {
			return err
		}
	}
}

// failed counts a failure and waits before the next try; it returns err
// when there should be none.
func (r retrier) failed(ctx context.Context, failures *int, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if !retryable(err) {
		return err
	}
	*failures++
	if *failures > r.opts.Retries {
		return fmt.Errorf("roughy: giving up after %d tries (run again to resume): %w", *failures, err)
	}
	wait := r.backoff(*failures)
	if he, ok := errors.AsType[*httpError](err); ok && he.retryAfter > 0 {
		wait = min(he.retryAfter, r.opts.BackoffMax)
	}
	fmt.Fprintf(r.logw, "\nroughy: %v; retrying in %s\n", err, wait.Round(time.Millisecond))
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(wait):
		return nil
	}
}

// backoff is the wait before try n+1: BackoffBase·2^(n-1), capped.
func (r retrier) backoff(n int) time.Duration {
	d := r.opts.BackoffBase
	for i := 1; i < n && d < r.opts.BackoffMax; i++ {
		d *= 2
	}
	return min(d, r.opts.BackoffMax)
}

// mediaTypes covers the containers users upload; Go's built-in MIME table
// knows none of them and /etc/mime.types may be absent.
var mediaTypes = map[string]string{
	".mp4": "video/mp4", ".m4v": "video/x-m4v", ".mov": "video/quicktime", ".qt": "video/quicktime",
	".mkv": "video/x-matroska", ".webm": "video/webm", ".avi": "video/x-msvideo",
	".mpg": "video/mpeg", ".mpeg": "video/mpeg", ".ts": "video/mp2t", ".m2ts": "video/mp2t",
	".mts": "video/mp2t", ".mxf": "application/mxf", ".flv": "video/x-flv", ".wmv": "video/x-ms-wmv",
	".3gp": "video/3gpp", ".ogv": "video/ogg",
	".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".aac": "audio/aac", ".wav": "audio/wav",
	".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/opus",
	".aif": "audio/aiff", ".aiff": "audio/aiff", ".wma": "audio/x-ms-wma", ".amr": "audio/amr",
}

// guessContentType guesses a MIME type from the file name, else from its
// first bytes.
func guessContentType(name string, head []byte) string {
	ext := strings.ToLower(filepath.Ext(name))
	if t, ok := mediaTypes[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	if t := http.DetectContentType(head); t != "application/octet-stream" {
		return t
	}
	return "application/octet-stream"
}

// assetType maps a MIME type to Roughy's asset type: audio/* is audio,
// everything else video.
func assetType(contentType string) string {
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && strings.HasPrefix(mt, "audio/") {
		return "audio"
	}
	return "video"
}

// metadataFor builds the Upload-Metadata of a new upload of f.
func metadataFor(f *os.File, name string, opts uploadOptions) (string, error) {
	ct := opts.ContentType
	if ct == "" {
		head := make([]byte, 512)
		n, err := f.ReadAt(head, 0)
		if err != nil && err != io.EOF {
			return "", fmt.Errorf("roughy: read file: %w", err)
		}
		ct = guessContentType(name, head[:n])
	}
	typ := opts.Type
	if typ == "" {
		typ = assetType(ct)
	}
	return encodeMetadata([][2]string{
		{"type", typ},
		{"content_type", ct},
		{"filename", filepath.Base(name)},
	}), nil
}

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
