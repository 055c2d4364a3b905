package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of utime/stime in /proc/<pid>/stat: USER_HZ, fixed at
// 100 on Linux x86 whatever the kernel's CONFIG_HZ.
const userHZ = 100

// server is one child process under measurement.
type server struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error
}

// startServer starts bin with args and env (added to the harness's own
// environment), stdout and stderr going to logPath.
func startServer(name, bin string, args, env []string, logPath string) (*server, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("ingestbench: %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("ingestbench: start %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd, log: lf, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// exited reports whether the process is gone.
func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs the process group.
func (s *server) stop(grace time.Duration) {
	defer s.log.Close()
	if s.exited() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-s.pid(), syscall.SIGKILL)
	<-s.done
}

// waitHTTP polls url until it answers with a status in ok (any status if
// ok is empty) or the process dies or timeout passes.
func (s *server) waitHTTP(ctx context.Context, method, url string, timeout time.Duration, ok ...int) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: 2 * time.Second}
	var last error
	for time.Now().Before(deadline) {
		if s.exited() {
			return fmt.Errorf("ingestbench: %s exited early (%v); see %s", s.name, s.err, s.log.Name())
		}
		req, _ := http.NewRequestWithContext(ctx, method, url, nil)
		req.Header.Set("Tus-Resumable", "1.0.0")
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if len(ok) == 0 {
				return nil
			}
			for _, code := range ok {
				if resp.StatusCode == code {
					return nil
				}
			}
			last = fmt.Errorf("status %d", resp.StatusCode)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("ingestbench: %s not ready at %s after %s: %v; see %s", s.name, url, timeout, last, s.log.Name())
}

// procStats is what /proc says about one process at one instant.
type procStats struct {
	cpu   time.Duration // utime + stime
	hwm   int64         // VmHWM, bytes: peak resident set since start
	rss   int64         // VmRSS, bytes
	valid bool
}

// readProc reads /proc/<pid>/stat and /proc/<pid>/status.
func readProc(pid int) (procStats, error) {
	var ps procStats
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ps, fmt.Errorf("ingestbench: read stat: %w", err)
	}
	// The command name (field 2) may hold spaces; fields restart after ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ps, errors.New("ingestbench: malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return ps, errors.New("ingestbench: short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return ps, fmt.Errorf("ingestbench: parse stat: %w", err)
	}
	ps.cpu = time.Duration(ut+st) * time.Second / userHZ
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return ps, fmt.Errorf("ingestbench: read status: %w", err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "VmHWM":
			ps.hwm = parseKB(v)
		case "VmRSS":
			ps.rss = parseKB(v)
		}
	}
	ps.valid = true
	return ps, nil
}

func parseKB(v string) int64 {
	f := strings.Fields(v)
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return n << 10
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("ingestbench: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
