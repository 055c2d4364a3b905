package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/roughy/ingest/tusclient"
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

// newClient is the TUS client of "roughy upload": its messages start with
// "roughy", and a PATCH whose body made no progress for a minute is
// cancelled (a connection can hang without an error).
func newClient(endpoint, key string) *tusclient.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute, // after the body was sent: covers fsync / S3 part upload
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
	}
	c := &tusclient.Client{HTTP: &http.Client{Transport: tr}, Endpoint: endpoint, Header: http.Header{},
		Name: "roughy", Stall: time.Minute}
	if key != "" {
		c.Header.Set("Authorization", "Bearer "+key)
	}
	return c
}

// errPermanent marks client-side failures that no retry can fix.
var errPermanent = tusclient.Permanent(errors.New("roughy: permanent failure"))

// retrier is the retry policy of opts, which says so on logw before each
// wait and tells how to go on when it gives up.
type retrier struct{ tusclient.Retry }

func newRetrier(opts uploadOptions, logw io.Writer) retrier {
	return retrier{tusclient.Retry{Retries: opts.Retries, BackoffBase: opts.BackoffBase, BackoffMax: opts.BackoffMax,
		OnRetry: func(err error, wait time.Duration) {
			fmt.Fprintf(logw, "\nroughy: %v; retrying in %s\n", err, wait.Round(time.Millisecond))
		}}}
}

// do runs fn under the policy.
func (r retrier) do(ctx context.Context, fn func() error) error {
	return giveUp(r.Do(ctx, fn))
}

// giveUp says that the state file keeps an upload that failed too often.
func giveUp(err error) error {
	if ge, ok := errors.AsType[*tusclient.GiveUpError](err); ok {
		return fmt.Errorf("roughy: giving up after %d tries (run again to resume): %w", ge.Tries, ge.Err)
	}
	return err
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
	abs, err := filepath.Abs(path)
	if err != nil {
		return uploadResult{}, fmt.Errorf("roughy: %w", err)
	}
	u := &fileUpload{f: f, abs: abs, size: fi.Size(), opts: opts, logw: logw,
		fp:    fingerprint(abs, fi.Size(), fi.ModTime(), opts.Endpoint),
		state: stateFile{path: opts.StateFile}, cl: newClient(opts.Endpoint, opts.Key), rt: newRetrier(opts, logw)}
	u.cl.ChunkSize, u.cl.Checksum = opts.ChunkSize, opts.Checksum
	return u.run(ctx)
}

// fileUpload is one run of runUpload.
type fileUpload struct {
	f     *os.File
	abs   string
	size  int64
	fp    string
	opts  uploadOptions
	logw  io.Writer
	state stateFile
	cl    *tusclient.Client
	rt    retrier
}

func (u *fileUpload) run(ctx context.Context) (uploadResult, error) {
	res, offset, err := u.resume(ctx)
	if err != nil {
		return uploadResult{}, err
	}
	if offset < 0 {
		if res, err = u.create(ctx); err != nil {
			return uploadResult{}, err
		}
		offset = 0
	}

	bar := newProgressBar(u.opts.Progress, u.size, offset)
	u.cl.OnSent = func(off int64) {
		bar.set(off)
		if u.opts.sent != nil {
			u.opts.sent(off)
		}
	}
	u.cl.OnAcked = func(off int64, patched bool) {
		bar.set(off)
		if patched {
			bar.chunkDone()
		}
	}
	err = u.cl.Send(ctx, res.URL, u.f, offset, u.size, u.rt.Retry)
	bar.finish()
	if err != nil {
		// A PATCH told that the upload is gone forgets it; a HEAD leaves
		// that to the next run, which says it starts over.
		if se, ok := errors.AsType[*tusclient.StatusError](err); ok && tusclient.Gone(err) && se.Method == http.MethodPatch {
			_ = u.state.remove(u.fp) // the PATCH's answer is the error to report
		}
		return uploadResult{}, giveUp(err)
	}

	if err := u.state.remove(u.fp); err != nil {
		fmt.Fprintf(u.logw, "roughy: warning: %v\n", err)
	}
	err = u.rt.do(ctx, func() error {
		var err error
		res.Asset, err = u.cl.Asset(ctx, res.AssetID)
		return err
	})
	if err != nil {
		// The bytes are all stored; only the summary is missing.
		fmt.Fprintf(u.logw, "roughy: uploaded, but reading the asset failed: %v\n", err)
	}
	return res, nil
}

// resume looks for an unfinished upload of the file in the state file and
// asks the server for its offset; -1 when there is none to resume.
func (u *fileUpload) resume(ctx context.Context) (uploadResult, int64, error) {
	e, ok, err := u.state.get(u.fp)
	if err != nil {
		fmt.Fprintf(u.logw, "roughy: warning: %v (starting a new upload)\n", err)
		return uploadResult{}, -1, nil
	}
	if !ok {
		return uploadResult{}, -1, nil
	}
	var offset int64
	err = u.rt.do(ctx, func() error {
		off, length, err := u.cl.Head(ctx, e.URL)
		if err == nil && length >= 0 && length != u.size {
			return fmt.Errorf("%w: stored upload has length %d, file has %d", errPermanent, length, u.size)
		}
		offset = off
		return err
	})
	switch {
	case err == nil:
		fmt.Fprintf(u.logw, "resuming %s at %d of %d bytes\n", e.URL, offset, u.size)
		return uploadResult{AssetID: e.AssetID, URL: e.URL, Resumed: offset}, offset, nil
	case ctx.Err() != nil:
		return uploadResult{}, 0, ctx.Err()
	case tusclient.Gone(err) || errors.Is(err, errPermanent):
		// Only a vanished or mismatched upload starts over; other
		// failures (a 401, say) keep it for a later run.
		fmt.Fprintf(u.logw, "roughy: earlier upload cannot be resumed (%v); starting over\n", err)
		return uploadResult{}, -1, u.state.remove(u.fp)
	default:
		return uploadResult{}, 0, err
	}
}

// create POSTs a new upload of the file and remembers it.
func (u *fileUpload) create(ctx context.Context) (uploadResult, error) {
	meta, err := metadataFor(u.f, u.abs, u.opts)
	if err != nil {
		return uploadResult{}, err
	}
	u.cl.Metadata = meta
	var cr tusclient.Created
	err = u.rt.do(ctx, func() error {
		var err error
		cr, err = u.cl.Create(ctx, u.size)
		return err
	})
	if err != nil {
		return uploadResult{}, err
	}
	res := uploadResult{AssetID: cr.AssetID(), URL: cr.URL}
	// Remember the upload before the first byte goes out, so a crash
	// anywhere after this point resumes instead of starting over.
	err = u.state.put(u.fp, stateEntry{URL: cr.URL, AssetID: res.AssetID, File: u.abs, Size: u.size, CreatedAt: time.Now().UTC()})
	if err != nil {
		return uploadResult{}, err
	}
	return res, nil
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
func metadataFor(f *os.File, name string, opts uploadOptions) ([][2]string, error) {
	ct := opts.ContentType
	if ct == "" {
		head := make([]byte, 512)
		n, err := f.ReadAt(head, 0)
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("roughy: read file: %w", err)
		}
		ct = guessContentType(name, head[:n])
	}
	typ := opts.Type
	if typ == "" {
		typ = assetType(ct)
	}
	return [][2]string{
		{"type", typ},
		{"content_type", ct},
		{"filename", filepath.Base(name)},
	}, nil
}
