// Package probe fills an asset's duration_seconds after its upload
// completed: workers take jobs from the session store's probe queue, run
// ffprobe on the stored object (a local path, or a presigned URL that
// ffprobe reads with range requests, never downloading the whole file
// first), and record the result. Failures are retried with exponential
// backoff and then parked in the dead-letter list; a probe never blocks or
// fails an upload.
package probe

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ErrNotMedia is a permanent failure: ffprobe could not parse the input as
// any media container ("Invalid data found when processing input"). Such
// jobs are not retried.
var ErrNotMedia = errors.New("probe: not a media file")

// ErrTransient marks failures worth retrying: timeouts, an unreachable or
// missing input, ffprobe missing or crashing.
var ErrTransient = errors.New("probe: transient failure")

// Runner runs ffprobe.
type Runner struct {
	// Path is the ffprobe binary ("": DefaultConfig's, "ffprobe" from
	// PATH).
	Path string
	// Timeout bounds one ffprobe run (0: DefaultConfig's, 60s).
	Timeout time.Duration
}

// probeNice is the nice value ffprobe runs at: the lowest priority.
// Probing is background work that may lag; taking uploads may not. One
// ffprobe run costs about 0.12 CPU-s even on a file it rejects at once
// (mostly its start: it loads some 200 shared libraries), 60 times what
// the server spends on taking a 256 KiB upload, so two workers at normal
// priority took the cores a burst of uploads needed. At nice 19 a probe gets a core only
// when requests leave it idle, and the queue drains after the burst.
const probeNice = 19

// maxStderr bounds how much of ffprobe's stderr is kept for the reason.
const maxStderr = 4 << 10

// Duration runs ffprobe on input (a file path or URL) and returns the
// container duration with exactly three decimals ("3782.413"), or "" when
// ffprobe read the input but found no duration (a still image, say). The
// error wraps ErrNotMedia or ErrTransient.
func (r Runner) Duration(ctx context.Context, input string) (string, error) {
	def := DefaultConfig().Runner
	bin := cmp.Or(r.Path, def.Path)
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = def.Timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	args := []string{"-v", "error", "-show_entries", "format=duration",
		"-of", "default=noprint_wrappers=1:nokey=1"}
	if isURL(input) {
		// Fail a stalled network read rather than hang until the timeout;
		// the value is in microseconds.
		args = append(args, "-rw_timeout", strconv.FormatInt(timeout.Microseconds(), 10))
	}
	// "-i" keeps an input that starts with "-" from being read as an option.
	args = append(args, "-i", input)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout bytes.Buffer
	stderr := &limitedBuffer{max: maxStderr}
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	cmd.WaitDelay = 2 * time.Second
	err := startNiced(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	// The input may be a presigned URL: keep its signature out of reasons
	// and logs.
	msg := strings.ReplaceAll(strings.TrimSpace(stderr.String()), input, "INPUT")
	if err != nil {
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return "", fmt.Errorf("%w: ffprobe timed out after %s", ErrTransient, timeout)
			}
			return "", ctx.Err()
		}
		if strings.Contains(msg, "Invalid data found when processing input") {
			return "", fmt.Errorf("%w: %s", ErrNotMedia, lastLine(msg))
		}
		if msg == "" {
			msg = err.Error()
		}
		return "", fmt.Errorf("%w: ffprobe: %s", ErrTransient, lastLine(msg))
	}
	return formatDuration(stdout.String()), nil
}

// formatDuration turns ffprobe's "2.000000\n" into "2.000"; "N/A", empty or
// nonsense output gives "".
func formatDuration(out string) string {
	s := strings.TrimSpace(out)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	d, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(d) || math.IsInf(d, 0) || d < 0 {
		return ""
	}
	return strconv.FormatFloat(d, 'f', 3, 64)
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// lastLine keeps the last line of ffprobe's stderr: the one naming the
// error, without the demuxer chatter above it.
func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[i+1:])
	}
	return s
}

// limitedBuffer keeps the last max bytes written to it, so a chatty ffprobe
// cannot grow memory without bound.
type limitedBuffer struct {
	buf []byte
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return n, nil
}

func (b *limitedBuffer) String() string { return string(b.buf) }
