// Package benchproc starts the child processes a benchmark measures and
// reads their CPU time and peak RSS from /proc. It is shared by
// bench/cmd/ingestbench and bench/cmd/bigupload.
package benchproc

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

// Server is one child process under measurement.
type Server struct {
	Name string
	cmd  *exec.Cmd
	Log  *os.File // stdout and stderr of the process
	done chan struct{}
	err  error
}

// Start starts bin with args and env (added to the harness's own
// environment), stdout and stderr going to logPath.
func Start(name, bin string, args, env []string, logPath string) (*Server, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("benchproc: %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("benchproc: start %s: %w", name, err)
	}
	s := &Server{Name: name, cmd: cmd, Log: lf, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

// PID is the process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Exited reports whether the process is gone.
func (s *Server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, waits up to grace, then SIGKILLs the process group.
func (s *Server) Stop(grace time.Duration) {
	defer s.Log.Close()
	if s.Exited() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-s.PID(), syscall.SIGKILL)
	<-s.done
}

// WaitHTTP polls url until it answers with a status in ok (any status if
// ok is empty) or the process dies or timeout passes.
func (s *Server) WaitHTTP(ctx context.Context, method, url string, timeout time.Duration, ok ...int) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: 2 * time.Second}
	var last error
	for time.Now().Before(deadline) {
		if s.Exited() {
			return fmt.Errorf("benchproc: %s exited early (%v); see %s", s.Name, s.err, s.Log.Name())
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
	return fmt.Errorf("benchproc: %s not ready at %s after %s: %v; see %s", s.Name, url, timeout, last, s.Log.Name())
}

// Stats is what /proc says about one process at one instant.
type Stats struct {
	CPU time.Duration // utime + stime
	// ChildCPU is cutime + cstime: the CPU of the children the process
	// has waited for (roughy's ffprobe runs).
	ChildCPU time.Duration
	HWM      int64 // VmHWM, bytes: peak resident set since start
	RSS      int64 // VmRSS, bytes
}

// Read reads /proc/<pid>/stat and /proc/<pid>/status.
func Read(pid int) (Stats, error) {
	var ps Stats
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ps, fmt.Errorf("benchproc: read stat: %w", err)
	}
	// The command name (field 2) may hold spaces; fields restart after ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ps, errors.New("benchproc: malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15, cutime
	// and cstime fields 16 and 17.
	if len(f) < 15 {
		return ps, errors.New("benchproc: short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	cut, err3 := strconv.ParseInt(f[13], 10, 64)
	cst, err4 := strconv.ParseInt(f[14], 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return ps, fmt.Errorf("benchproc: parse stat: %w", err)
	}
	ps.CPU = time.Duration(ut+st) * time.Second / userHZ
	ps.ChildCPU = time.Duration(cut+cst) * time.Second / userHZ
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return ps, fmt.Errorf("benchproc: read status: %w", err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "VmHWM":
			ps.HWM = parseKB(v)
		case "VmRSS":
			ps.RSS = parseKB(v)
		}
	}
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

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("benchproc: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// LoadAvg returns the 1-minute load average: the machine is shared, and a
// busy neighbour shows up here before it shows up in the figures.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// MachineCPU is the first line of /proc/stat: the CPU time of all cores
// since boot, in clock ticks.
type MachineCPU struct {
	Total  int64 // every state but guest (counted in user already)
	Idle   int64
	IOWait int64 // idle with I/O outstanding
}

// ReadMachineCPU reads the machine's CPU times from /proc/stat.
func ReadMachineCPU() (MachineCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return MachineCPU{}, fmt.Errorf("benchproc: read /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseMachineCPU(line)
}

// parseMachineCPU parses "cpu  user nice system idle iowait irq softirq
// steal guest guest_nice".
func parseMachineCPU(line string) (MachineCPU, error) {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return MachineCPU{}, fmt.Errorf("benchproc: malformed /proc/stat line %q", line)
	}
	var m MachineCPU
	for i, v := range f[1:9] { // user … steal
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return MachineCPU{}, fmt.Errorf("benchproc: parse /proc/stat: %w", err)
		}
		m.Total += n
		switch i {
		case 3:
			m.Idle = n
		case 4:
			m.IOWait = n
		}
	}
	return m, nil
}

// Since returns the shares of the machine's CPU time since before that
// were busy (neither idle nor waiting for I/O) and waiting for I/O, or -1
// for both when no tick passed.
func (m MachineCPU) Since(before MachineCPU) (busy, iowait float64) {
	total := m.Total - before.Total
	if total <= 0 {
		return -1, -1
	}
	idle, wait := m.Idle-before.Idle, m.IOWait-before.IOWait
	return float64(total-idle-wait) / float64(total), float64(wait) / float64(total)
}
