//go:build !linux

package probe

import "os/exec"

// startNiced starts cmd; lowering its priority is done on Linux only.
func startNiced(cmd *exec.Cmd) error { return cmd.Start() }
