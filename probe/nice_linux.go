package probe

import (
	"os/exec"
	"runtime"
	"syscall"
)

// startNiced starts cmd at the lowest CPU priority, nice 19. On Linux a
// nice value belongs to a thread and a child inherits its forking
// thread's, so the fork runs on a thread of its own that is niced first:
// the child never runs a moment at normal priority. That thread is never
// unlocked; it ends with this goroutine instead of going back to run the
// server's. If the thread cannot be niced, cmd starts at normal priority.
func startNiced(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), probeNice)
		errc <- cmd.Start()
	}()
	return <-errc
}
