package benchproc

import (
	"crypto/sha256"
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestReadProcSelf(t *testing.T) {
	before, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn ~200 ms of CPU so that utime must move (USER_HZ = 100).
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline); {
		sha256.Sum256(buf)
	}
	after, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after.CPU <= before.CPU {
		t.Errorf("cpu: got %s after %s, want it to grow", after.CPU, before.CPU)
	}
	if after.HWM < 1<<20 || after.HWM < after.RSS {
		t.Errorf("VmHWM %d, VmRSS %d: want HWM ≥ 1 MiB and ≥ RSS", after.HWM, after.RSS)
	}
}

// TestReadChildCPU runs a child that burns CPU: once it has been waited
// for, its CPU shows up as the parent's ChildCPU and not as its CPU.
func TestReadChildCPU(t *testing.T) {
	before, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done").Run(); err != nil {
		t.Fatal(err)
	}
	after, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := after.ChildCPU - before.ChildCPU; d < 20*time.Millisecond {
		t.Errorf("child CPU grew by %s, want the child's loop (≥ 20 ms)", d)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{{"2GiB", 2 << 30}, {"512MiB", 512 << 20}, {"64M", 64 << 20}, {"1000", 1000}} {
		got, err := ParseSize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q): got %d, %v, want %d", tc.in, got, err, tc.want)
		}
	}
	if _, err := ParseSize("12XB"); err == nil {
		t.Error("ParseSize(12XB): got nil error")
	}
}
