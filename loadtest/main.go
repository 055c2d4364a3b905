// Command loadtest is a TUS 1.0.0 load generator: N concurrent workers run
// M uploads against one or more creation URLs and report aggregate
// throughput and latency percentiles. k6 is not installed on the
// project's machines, so this stays a plain Go program (see README.md).
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/roughy/ingest/bench/tusclient"
)

type config struct {
	urls      []string
	key       string
	workers   int
	uploads   int
	size      int64
	chunk     int64
	file      string
	rotate    bool
	retries   int
	timeout   time.Duration
	mediaType string
	noMeta    bool
	delete    bool
}

// outcome is one upload's result.
type outcome struct {
	elapsed time.Duration
	patches []time.Duration
	resumes int
	err     error
}

func main() {
	var c config
	var urls string
	flag.StringVar(&urls, "url", "http://127.0.0.1:8080/api/v1/assets/upload-resumable", "TUS creation URL; a comma list spreads uploads over several nodes")
	flag.StringVar(&c.key, "key", os.Getenv("ROUGHY_API_KEY"), "bearer key (default $ROUGHY_API_KEY; empty: no Authorization header, e.g. for tusd)")
	flag.IntVar(&c.workers, "c", 16, "concurrent uploads")
	flag.IntVar(&c.uploads, "n", 0, "total uploads (default: -c)")
	size := flag.String("size", "256MiB", "bytes per upload (e.g. 512MiB, 2GiB)")
	chunk := flag.String("chunk", "64MiB", "PATCH body size")
	flag.StringVar(&c.file, "file", "", "source file (default: a random file of -size in the temp dir, made once)")
	flag.BoolVar(&c.rotate, "rotate", false, "send each PATCH of an upload to the next node of -url in turn (any-node resume)")
	flag.IntVar(&c.retries, "retries", 3, "per upload: on a failed PATCH, HEAD and resume up to this many times")
	flag.DurationVar(&c.timeout, "timeout", 5*time.Minute, "per-request timeout")
	flag.StringVar(&c.mediaType, "type", "video", "Upload-Metadata type")
	flag.BoolVar(&c.noMeta, "no-metadata", false, "send no Upload-Metadata")
	flag.BoolVar(&c.delete, "delete", false, "DELETE each upload after it completed (keeps disks from filling)")
	flag.Parse()
	var err error
	if c.size, err = parseSize(*size); err == nil {
		c.chunk, err = parseSize(*chunk)
	}
	if err != nil || c.chunk <= 0 || c.size <= 0 || c.workers <= 0 {
		fmt.Fprintln(os.Stderr, "loadtest: bad -size, -chunk or -c")
		os.Exit(2)
	}
	if c.uploads <= 0 {
		c.uploads = c.workers
	}
	for u := range strings.SplitSeq(urls, ",") {
		if u = strings.TrimSpace(u); u != "" {
			c.urls = append(c.urls, u)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config, out io.Writer) error {
	src, err := openSource(c.file, c.size)
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return fmt.Errorf("loadtest: stat source: %w", err)
	}
	if fi.Size() < c.size {
		return fmt.Errorf("loadtest: source %s has %d bytes, want at least %d", src.Name(), fi.Size(), c.size)
	}
	hc := tusclient.NewHTTPClient(c.timeout)
	defer hc.CloseIdleConnections()

	results := make([]outcome, c.uploads)
	var next, done atomic.Int64
	var sent atomic.Int64
	start := time.Now()
	stopProgress := progress(&done, &sent, c, start)
	var wg sync.WaitGroup
	for range c.workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= c.uploads || ctx.Err() != nil {
					return
				}
				base := (int64(i) * c.size) % (fi.Size() - c.size + 1)
				results[i] = upload(ctx, c, hc, i, src, base, &sent)
				done.Add(1)
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	stopProgress()
	summarize(out, c, results, wall)
	for _, r := range results {
		if r.err != nil {
			return errors.New("loadtest: some uploads failed")
		}
	}
	return nil
}

// upload runs upload number i, resuming from the server's offset after a
// failed PATCH.
func upload(ctx context.Context, c config, hc *http.Client, i int, src io.ReaderAt, base int64, sent *atomic.Int64) outcome {
	cl := &tusclient.Client{HTTP: hc, Endpoint: c.urls[i%len(c.urls)], ChunkSize: c.chunk, Header: http.Header{}}
	if c.key != "" {
		cl.Header.Set("Authorization", "Bearer "+c.key)
	}
	if !c.noMeta {
		cl.Metadata = map[string]string{"type": c.mediaType, "filename": fmt.Sprintf("loadtest-%d.bin", i)}
	}
	var o outcome
	start := time.Now()
	loc, _, err := cl.Create(ctx, c.size)
	if err != nil {
		o.err = err
		return o
	}
	var off int64
	for j := 0; off < c.size; j++ {
		target := loc
		if c.rotate && len(c.urls) > 1 {
			target = withHost(loc, c.urls[(i+j+1)%len(c.urls)])
		}
		n := min(c.chunk, c.size-off)
		t0 := time.Now()
		got, err := cl.Patch(ctx, target, section{src, base}, off, n)
		if err == nil && got == off+n {
			o.patches = append(o.patches, time.Since(t0))
			sent.Add(n)
			off = got
			continue
		}
		if err == nil {
			err = fmt.Errorf("loadtest: server offset %d after PATCH, want %d", got, off+n)
		}
		if o.resumes >= c.retries || ctx.Err() != nil {
			o.err = err
			return o
		}
		o.resumes++
		time.Sleep(time.Duration(o.resumes) * 500 * time.Millisecond)
		head, herr := cl.Head(ctx, target)
		if herr != nil {
			o.err = errors.Join(err, herr)
			return o
		}
		sent.Add(head - off)
		off = head
	}
	o.elapsed = time.Since(start)
	if c.delete {
		if req, err := http.NewRequestWithContext(ctx, http.MethodDelete, loc, nil); err == nil {
			req.Header = cl.Header.Clone()
			req.Header.Set("Tus-Resumable", "1.0.0")
			if resp, err := hc.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}
	return o
}

// section maps upload offsets onto the shared source at base.
type section struct {
	src  io.ReaderAt
	base int64
}

func (s section) ReadAt(p []byte, off int64) (int, error) { return s.src.ReadAt(p, s.base+off) }

func withHost(loc, endpoint string) string {
	host := strings.TrimPrefix(strings.TrimPrefix(endpoint, "http://"), "https://")
	host, _, _ = strings.Cut(host, "/")
	scheme, rest, ok := strings.Cut(loc, "://")
	if !ok {
		return loc
	}
	_, path, _ := strings.Cut(rest, "/")
	return scheme + "://" + host + "/" + path
}

// progress prints a line every 5 s to stderr until stopped.
func progress(done, sent *atomic.Int64, c config, start time.Time) func() {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				el := time.Since(start).Seconds()
				fmt.Fprintf(os.Stderr, "loadtest: %.0fs  %d/%d uploads done  %.1f MiB/s\n", el, done.Load(), c.uploads, float64(sent.Load())/(1<<20)/el)
			}
		}
	})
	return func() { close(quit); wg.Wait() }
}

func summarize(w io.Writer, c config, results []outcome, wall time.Duration) {
	var ok, failed, resumes int
	var bytes int64
	var ups, patches []time.Duration
	errs := map[string]int{}
	for _, r := range results {
		resumes += r.resumes
		if r.err != nil {
			failed++
			errs[r.err.Error()]++
			continue
		}
		ok++
		bytes += c.size
		ups = append(ups, r.elapsed)
		patches = append(patches, r.patches...)
	}
	fmt.Fprintf(w, "targets:        %s (rotate %v)\n", strings.Join(c.urls, ", "), c.rotate)
	fmt.Fprintf(w, "uploads:        %d ok, %d failed, %d resumes (%d concurrent, %s each, %s PATCHes)\n", ok, failed, resumes, c.workers, fmtSize(c.size), fmtSize(c.chunk))
	fmt.Fprintf(w, "wall time:      %s\n", wall.Round(time.Millisecond))
	fmt.Fprintf(w, "throughput:     %.1f MiB/s aggregate (completed uploads only)\n", float64(bytes)/(1<<20)/wall.Seconds())
	fmt.Fprintf(w, "upload time:    p50 %s  p90 %s  p99 %s  max %s\n", pct(ups, .5), pct(ups, .9), pct(ups, .99), pct(ups, 1))
	fmt.Fprintf(w, "PATCH latency:  p50 %s  p90 %s  p99 %s  max %s  (%d PATCHes)\n", pct(patches, .5), pct(patches, .9), pct(patches, .99), pct(patches, 1), len(patches))
	for e, n := range errs {
		fmt.Fprintf(w, "error ×%d:       %s\n", n, e)
	}
}

func pct(ds []time.Duration, p float64) string {
	if len(ds) == 0 {
		return "–"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)].Round(time.Millisecond).String()
}

// openSource opens path, or makes (once) a random file of size bytes in
// the temp dir; bytes stream from disk (page cache), never held in memory.
func openSource(path string, size int64) (*os.File, error) {
	if path == "" {
		path = filepath.Join(os.TempDir(), "roughy-loadtest-"+strconv.FormatInt(size, 10)+".bin")
		if fi, err := os.Stat(path); err != nil || fi.Size() < size {
			if err := generate(path, size); err != nil {
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
	}
	return strconv.FormatInt(n, 10) + "B"
}
