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

func TestParseMachineCPU(t *testing.T) {
	before, err := parseMachineCPU("cpu  100 10 50 800 40 0 0 0 0 0")
	if err != nil {
		t.Fatal(err)
	}
	after, err := parseMachineCPU("cpu  160 10 80 850 60 0 0 0 7 0")
	if err != nil {
		t.Fatal(err)
	}
	// 160 ticks passed: 90 busy (60 user, 30 system), 50 idle, 20 iowait;
	// guest (7) is in user already.
	busy, wait := after.Since(before)
	if busy != 90.0/160 || wait != 20.0/160 {
		t.Fatalf("busy %v iowait %v, want %v and %v", busy, wait, 90.0/160, 20.0/160)
	}
	if b, w := before.Since(before); b != -1 || w != -1 {
		t.Fatalf("no tick: %v %v, want -1 -1", b, w)
	}
	if _, err := parseMachineCPU("intr 1 2 3"); err == nil {
		t.Fatal("a line that is not the cpu line parsed")
	}
}

// TestReadMachineCPUBusy: a goroutine spinning for a while shows up as
// busy time of the machine.
func TestReadMachineCPUBusy(t *testing.T) {
	before, err := ReadMachineCPU()
	if err != nil {
		t.Fatal(err)
	}
	spins := 0
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
		spins++
	}
	after, err := ReadMachineCPU()
	if err != nil {
		t.Fatal(err)
	}
	busy, _ := after.Since(before)
	if busy <= 0 || busy > 1 {
		t.Fatalf("busy share %v over a 300 ms spin (%d loops), want in (0, 1]", busy, spins)
	}
}
