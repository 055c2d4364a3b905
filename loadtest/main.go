// Command loadtest is a TUS 1.0.0 load generator: N concurrent workers run
// M uploads against one or more creation URLs and report aggregate
// throughput and latency percentiles per verb; it can pace or ramp the
// uploads, cut PATCHes off and resume them, and checks every finished
// asset's SHA-256 against its source (see README.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/roughy/ingest/tusclient"
)

type config struct {
	urls      []string
	keys      []string
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
	// rate is uploads started per second (0: as fast as the workers go);
	// ramp spreads the workers' start over this long.
	rate float64
	ramp time.Duration
	// abortRate is the share of PATCHes cut off mid-body and resumed.
	abortRate float64
	seed      uint64
	// verify compares every finished asset's SHA-256 with its source.
	verify        bool
	verifyTimeout time.Duration
	// verifyDownload also downloads every finished asset (its
	// download_url) and hashes what storage serves: the asset's sha256 is
	// computed on the way in and says nothing about what storage holds.
	verifyDownload bool
	// live redraws the progress line in place.
	live     bool
	progress io.Writer
}

// The verbs whose latencies are reported.
const (
	verbPOST = iota
	verbPATCH
	verbHEAD
	verbDELETE
	verbGET
	numVerbs
)

var verbNames = [numVerbs]string{"POST", "PATCH", "HEAD", "DELETE", "GET"}

// outcome is one upload's result.
type outcome struct {
	elapsed time.Duration
	lat     [numVerbs][]time.Duration
	resumes int
	// retried is why each resumed PATCH failed (reason).
	retried []string
	aborts  int
	err     error
}

// backoff is the wait before the n-th resume in a row: 0.5, 1, 2, 4 s…
// (at most 8 s), so that four tries outlast Roughy's Retry-After of 5 s.
func backoff(n int) time.Duration {
	return tusclient.Backoff(n, 500*time.Millisecond, 8*time.Second)
}

// errServerOffset: a PATCH was acknowledged at another offset than the
// end of its body.
var errServerOffset = errors.New("server offset")

// reason is a short name for a failed PATCH: its HTTP status, "offset"
// for a wrong Upload-Offset, else "transport".
func reason(err error) string {
	if se, ok := errors.AsType[*tusclient.StatusError](err); ok {
		return strconv.Itoa(se.Status)
	}
	if errors.Is(err, tusclient.ErrBadOffset) || errors.Is(err, errServerOffset) {
		return "offset"
	}
	return "transport"
}

func (o *outcome) took(verb int, since time.Time) {
	o.lat[verb] = append(o.lat[verb], time.Since(since))
}

func main() {
	var c config
	var urls, keys string
	flag.StringVar(&urls, "url", "http://127.0.0.1:8080/api/v1/assets/upload-resumable", "TUS creation URL; a comma list spreads uploads over several nodes")
	flag.StringVar(&keys, "key", os.Getenv("ROUGHY_API_KEY"), "bearer key; a comma list gives upload i key i mod n (several accounts); default $ROUGHY_API_KEY; empty: no Authorization header, e.g. for tusd")
	flag.IntVar(&c.workers, "c", 16, "concurrent uploads (at most)")
	flag.IntVar(&c.uploads, "n", 0, "total uploads (default: -c)")
	size := flag.String("size", "256MiB", "bytes per upload (e.g. 512MiB, 2GiB)")
	chunk := flag.String("chunk", "64MiB", "PATCH body size")
	flag.StringVar(&c.file, "file", "", "source file (default: a random file of -size + 1 MiB in the temp dir, made once)")
	flag.BoolVar(&c.rotate, "rotate", false, "send each PATCH of an upload to the next node of -url in turn (any-node resume)")
	flag.IntVar(&c.retries, "retries", 3, "per upload: failed PATCHes in a row without progress that are resumed (HEAD, PATCH from the server's offset)")
	flag.DurationVar(&c.timeout, "timeout", 5*time.Minute, "per-request timeout")
	flag.StringVar(&c.mediaType, "type", "video", "Upload-Metadata type")
	flag.BoolVar(&c.noMeta, "no-metadata", false, "send no Upload-Metadata")
	flag.BoolVar(&c.delete, "delete", false, "DELETE each upload after it completed (keeps disks from filling)")
	flag.Float64Var(&c.rate, "rate", 0, "target uploads started per second (0: each worker starts the next upload at once)")
	flag.DurationVar(&c.ramp, "ramp", 0, "bring the -c workers up evenly over this long")
	flag.Float64Var(&c.abortRate, "abort-rate", 0, "share of PATCHes (0..1) cut off after a random number of bytes, then resumed with HEAD")
	flag.Uint64Var(&c.seed, "seed", uint64(time.Now().UnixNano()), "seed of the abort choices")
	flag.BoolVar(&c.verify, "verify", true, "check each finished asset's SHA-256 (GET /api/v1/assets/{id}) against its source")
	flag.DurationVar(&c.verifyTimeout, "verify-timeout", 30*time.Second, "how long to wait for an asset's sha256")
	flag.BoolVar(&c.verifyDownload, "verify-download", false, "with -verify, also download each finished asset and compare its bytes' SHA-256 with the source (off for throughput runs: the downloads add load)")
	flag.Parse()
	var err error
	if c.size, err = parseSize(*size); err == nil {
		c.chunk, err = parseSize(*chunk)
	}
	if err != nil || c.chunk <= 0 || c.size <= 0 || c.workers <= 0 || c.abortRate < 0 || c.abortRate > 1 || c.rate < 0 {
		fmt.Fprintln(os.Stderr, "loadtest: bad -size, -chunk, -c, -rate or -abort-rate")
		os.Exit(2)
	}
	if c.uploads <= 0 {
		c.uploads = c.workers
	}
	c.urls, c.keys = splitList(urls), splitList(keys)
	c.progress, c.live = os.Stderr, isTerminal(os.Stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func splitList(v string) []string {
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
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
	var v *verifier
	if c.verify {
		v = &verifier{hc: hc, src: src, size: c.size, timeout: c.verifyTimeout, download: c.verifyDownload}
	}
	if c.progress == nil {
		c.progress = io.Discard
	}

	results := make([]outcome, c.uploads)
	var cnt counters
	var late int64
	start := time.Now()
	stopProgress := progress(c.progress, c.live, &cnt, c.uploads, start)
	jobs := make(chan int)
	go dispatch(ctx, c.uploads, c.rate, start, jobs, &late)
	var wg sync.WaitGroup
	for w := range c.workers {
		wg.Go(func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(rampDelay(w, c.workers, c.ramp)):
			}
			for i := range jobs {
				base := (int64(i) * c.size) % (fi.Size() - c.size + 1)
				cnt.running.Add(1)
				r := upload(ctx, c, hc, v, i, src, base, &cnt)
				cnt.running.Add(-1)
				results[i] = r
				cnt.done.Add(1)
				if r.err != nil {
					cnt.failed.Add(1)
				}
				if errors.Is(r.err, errCorrupt) {
					cnt.corrupt.Add(1)
				}
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	stopProgress()
	summarize(out, c, results, wall, late)
	if cnt.failed.Load() > 0 || cnt.done.Load() < int64(c.uploads) {
		return fmt.Errorf("loadtest: %d of %d uploads failed or did not run (%d corrupt)", int64(c.uploads)-cnt.done.Load()+cnt.failed.Load(), c.uploads, cnt.corrupt.Load())
	}
	return nil
}

// upload runs upload number i: POST, PATCHes (some cut off on purpose
// with -abort-rate, then resumed from HEAD's offset), a resume from the
// server's offset after a failed PATCH, the SHA-256 check and the DELETE.
//
//nolint:gocyclo,funlen // One upload's life as a client lives it (create, the PATCH loop with its cut-and-resume and retry-and-resume branches, verify, delete), updating one outcome at each step.
func upload(ctx context.Context, c config, hc *http.Client, v *verifier, i int, src io.ReaderAt, base int64, cnt *counters) outcome {
	cl := &tusclient.Client{HTTP: hc, Endpoint: c.urls[i%len(c.urls)], ChunkSize: c.chunk, Header: http.Header{}}
	if len(c.keys) > 0 {
		cl.Header.Set("Authorization", "Bearer "+c.keys[i%len(c.keys)])
	}
	if !c.noMeta {
		cl.Metadata = tusclient.SortedMetadata(map[string]string{"type": c.mediaType, "filename": fmt.Sprintf("loadtest-%d.bin", i)})
	}
	var o outcome
	start := time.Now()
	cr, err := cl.Create(ctx, c.size)
	loc := cr.URL
	o.took(verbPOST, start)
	if err != nil {
		o.err = err
		return o
	}
	ab := newAborter(c.abortRate, c.seed, i)
	sec := section{src, base}
	var off, sent int64 // sent: the furthest byte any PATCH sent
	fails := 0
	for j := 0; off < c.size; j++ {
		target := loc
		if c.rotate && len(c.urls) > 1 {
			target = withHost(loc, c.urls[(i+j+1)%len(c.urls)])
		}
		n := min(c.chunk, c.size-off)
		if cut, ok := ab.cut(n); ok {
			o.aborts++
			cnt.aborts.Add(1)
			if _, err := cl.Patch(ctx, target, cutReaderAt{sec, off + cut}, off, n); err == nil {
				o.err = fmt.Errorf("loadtest: PATCH at %d cut after %d of %d bytes was acknowledged", off, cut, n)
				return o
			}
			t0 := time.Now()
			head, _, err := cl.Head(ctx, target)
			o.took(verbHEAD, t0)
			// Never below what was acknowledged, never past what was ever
			// sent: an earlier cut PATCH of this upload may still commit
			// what it read after this one started (it lets go when this
			// one takes the upload over), so the bound is the furthest
			// byte sent so far, not this PATCH's.
			sent = max(sent, off+cut)
			if err == nil && (head < off || head > sent) {
				err = fmt.Errorf("loadtest: HEAD after a PATCH at %d cut after %d bytes: offset %d, want %d..%d", off, cut, head, off, sent)
			}
			if err != nil {
				o.err = err
				return o
			}
			cnt.sent.Add(head - off)
			off = head
			continue
		}
		t0 := time.Now()
		got, err := cl.Patch(ctx, target, sec, off, n)
		if err == nil && got == off+n {
			o.took(verbPATCH, t0)
			cnt.sent.Add(n)
			off, fails = got, 0
			continue
		}
		if err == nil {
			err = fmt.Errorf("loadtest: %w %d after PATCH, want %d", errServerOffset, got, off+n)
		}
		if fails >= c.retries || ctx.Err() != nil {
			o.err = err
			return o
		}
		fails++
		o.resumes++
		o.retried = append(o.retried, reason(err))
		time.Sleep(backoff(fails))
		t0 = time.Now()
		head, _, herr := cl.Head(ctx, target)
		o.took(verbHEAD, t0)
		if herr != nil {
			o.err = errors.Join(err, herr)
			return o
		}
		if head > off {
			// Progress (a 409 after an abort whose bytes the server
			// committed after our HEAD): not a failure in a row.
			fails = 0
		}
		cnt.sent.Add(head - off)
		off = head
	}
	o.elapsed = time.Since(start)
	if v != nil {
		if u, ok := assetURL(cl.Endpoint, loc); ok {
			lat, err := v.check(ctx, u, cl.Header, base)
			o.lat[verbGET] = append(o.lat[verbGET], lat...)
			if err != nil {
				o.err = err
				return o
			}
		}
	}
	if c.delete {
		t0 := time.Now()
		if req, err := cl.NewRequest(ctx, http.MethodDelete, loc, nil); err == nil {
			if resp, err := hc.Do(req); err == nil {
				resp.Body.Close()
				o.took(verbDELETE, t0)
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

func summarize(w io.Writer, c config, results []outcome, wall time.Duration, late int64) {
	var ok, failed, corrupt, resumes, aborts int
	var bytes int64
	var ups []time.Duration
	var lat [numVerbs][]time.Duration
	errs := map[string]int{}
	retried := map[string]int{}
	for _, r := range results {
		resumes += r.resumes
		for _, why := range r.retried {
			retried[why]++
		}
		aborts += r.aborts
		for v := range lat {
			lat[v] = append(lat[v], r.lat[v]...)
		}
		if r.err != nil {
			failed++
			if errors.Is(r.err, errCorrupt) {
				corrupt++
			}
			errs[r.err.Error()]++
			continue
		}
		ok++
		bytes += c.size
		ups = append(ups, r.elapsed)
	}
	fmt.Fprintf(w, "targets:        %s (rotate %v, %d keys)\n", strings.Join(c.urls, ", "), c.rotate, len(c.keys))
	fmt.Fprintf(w, "uploads:        %d ok, %d failed, %d corrupt, %d resumes, %d injected aborts (%d concurrent, %s each, %s PATCHes)\n",
		ok, failed, corrupt, resumes, aborts, c.workers, fmtSize(c.size), fmtSize(c.chunk))
	if len(retried) > 0 {
		var parts []string
		for why, n := range retried {
			parts = append(parts, fmt.Sprintf("%s ×%d", why, n))
		}
		slices.Sort(parts)
		fmt.Fprintf(w, "resumed after:  %s\n", strings.Join(parts, ", "))
	}
	if c.rate > 0 || c.ramp > 0 {
		fmt.Fprintf(w, "schedule:       rate %g/s (%d started late), ramp %s\n", c.rate, late, c.ramp)
	}
	if c.verify {
		what := "SHA-256"
		if c.verifyDownload {
			what = "SHA-256 and downloaded bytes"
		}
		fmt.Fprintf(w, "verified:       %d assets' %s equal to their source\n", ok, what)
	}
	fmt.Fprintf(w, "wall time:      %s\n", wall.Round(time.Millisecond))
	fmt.Fprintf(w, "throughput:     %.1f MiB/s aggregate (completed uploads only)\n", float64(bytes)/(1<<20)/wall.Seconds())
	fmt.Fprintf(w, "upload time:    p50 %s  p95 %s  p99 %s  max %s\n", pct(ups, .5), pct(ups, .95), pct(ups, .99), pct(ups, 1))
	for v, ds := range lat {
		if len(ds) > 0 {
			fmt.Fprintf(w, "%-7s latency: p50 %s  p95 %s  p99 %s  max %s  (%d requests)\n",
				verbNames[v], pct(ds, .5), pct(ds, .95), pct(ds, .99), pct(ds, 1), len(ds))
		}
	}
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
