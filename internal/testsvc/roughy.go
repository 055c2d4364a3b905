package testsvc

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// roughyHealthTimeout bounds how long a started roughy may take to answer
// /healthz with 200.
const roughyHealthTimeout = 60 * time.Second

// BuildRoughy builds github.com/roughy/ingest/cmd/roughy into a new temp
// dir, for a TestMain; cleanup removes the dir.
func BuildRoughy() (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "roughy-bin-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	bin = filepath.Join(dir, "roughy")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/roughy/ingest/cmd/roughy")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("go build ./cmd/roughy: %w", err)
	}
	return bin, cleanup, nil
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testsvc: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// CleanEnv is the process environment without ROUGHY_*, AWS_* and OTEL_*
// variables, so that the caller's shell cannot change a test's server.
func CleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "ROUGHY_") && !strings.HasPrefix(e, "AWS_") && !strings.HasPrefix(e, "OTEL_") {
			env = append(env, e)
		}
	}
	return env
}

// LogBuffer collects a child process's output for failure reports.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Tail is the last n bytes written (all of it when shorter).
func (b *LogBuffer) Tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// Roughy is one `roughy serve` process on a loopback port. Fill in Bin,
// Args (flags after --listen) and Env (added to CleanEnv), then Start.
type Roughy struct {
	Bin  string
	Args []string
	Env  []string
	// Wrap, when set, is a command that runs the binary: Bin and its
	// arguments follow it (e.g. a shell that lowers `ulimit -n` first).
	Wrap []string
	URL  string // http://127.0.0.1:PORT (https with TLS), set by Start
	// TLS, when set, is the client side of a node started with
	// --tls-cert: Start waits for /healthz over it.
	TLS *tls.Config
	Log LogBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs `roughy serve --listen 127.0.0.1:PORT Args...` on a new free
// port and waits until /healthz answers 200; it fails t if the process
// exits first or does not answer in time (killing it). Start again after Stop or Kill
// restarts it (on a new port).
func (r *Roughy) Start(t testing.TB) {
	t.Helper()
	port := FreePort(t)
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	r.URL = scheme + "://127.0.0.1:" + strconv.Itoa(port)
	args := append([]string{"serve", "--listen", "127.0.0.1:" + strconv.Itoa(port)}, r.Args...)
	cmd := exec.Command(r.Bin, args...)
	if len(r.Wrap) > 0 {
		cmd = exec.Command(r.Wrap[0], slices.Concat(r.Wrap[1:], []string{r.Bin}, args)...)
	}
	cmd.Env = append(CleanEnv(), r.Env...)
	fmt.Fprintf(&r.Log, "=== start %v\n", args)
	cmd.Stdout, cmd.Stderr = &r.Log, &r.Log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start roughy: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()

	hc := &http.Client{Timeout: 2 * time.Second}
	if r.TLS != nil {
		hc.Transport = &http.Transport{TLSClientConfig: r.TLS, DisableKeepAlives: true}
	}
	deadline := time.Now().Add(roughyHealthTimeout)
	for {
		select {
		case <-done:
			t.Fatalf("roughy %s exited before /healthz answered:\n%s", r.URL, r.Log.Tail(4000))
		default:
		}
		resp, err := hc.Get(r.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			r.Kill()
			t.Fatalf("roughy %s: /healthz not 200 after %v (last err %v):\n%s", r.URL, roughyHealthTimeout, err, r.Log.Tail(4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Signal sends sig to the running process.
func (r *Roughy) Signal(sig os.Signal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return errors.New("testsvc: roughy is not running")
	}
	return r.cmd.Process.Signal(sig)
}

// take detaches the running process (nil when none).
func (r *Roughy) take() (*exec.Cmd, chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	return cmd, done
}

// Stop sends SIGTERM and waits up to grace for the exit, then SIGKILLs;
// it reports whether the process exited within grace (true when none ran).
func (r *Roughy) Stop(grace time.Duration) bool {
	cmd, done := r.take()
	if cmd == nil {
		return true
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return true
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
		return false
	}
}

// Terminate sends SIGTERM and returns a channel closed when the process
// has exited; the caller decides how long to wait. The process is killed
// at t's cleanup if it is still running.
func (r *Roughy) Terminate(t testing.TB) <-chan struct{} {
	cmd, done := r.take()
	if cmd == nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return done
}

// Kill sends SIGKILL and waits for the process to be gone.
func (r *Roughy) Kill() {
	cmd, done := r.take()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// PID is the running process's id (0 when none runs).
func (r *Roughy) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}
