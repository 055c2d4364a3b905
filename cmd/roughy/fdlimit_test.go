package main

import (
	"fmt"
	"syscall"
	"testing"
)

func TestConnLimits(t *testing.T) {
	for _, tc := range []struct {
		fds          uint64
		total, perIP int
	}{
		{0, 1, 1},
		{1, 1, 1},
		{256, 128, 32},
		{1024, 512, 128},
		{20000, 10000, 1024},
		{1 << 20, 1 << 18, 1024},
		{^uint64(0), 1 << 18, 1024}, // RLIM_INFINITY
	} {
		total := connLimit(tc.fds)
		if perIP := perIPLimit(total); total != tc.total || perIP != tc.perIP {
			t.Errorf("fds %d: got max-conns %d per-ip %d, want %d and %d", tc.fds, total, perIP, tc.total, tc.perIP)
		}
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := parsePrefixes(" 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,::ffff:198.51.100.1, 172.16.5.4/12")
	if err != nil {
		t.Fatal(err)
	}
	want := "[10.0.0.0/8 192.0.2.7/32 2001:db8::/32 198.51.100.1/32 172.16.0.0/12]"
	if s := fmt.Sprint(got); s != want {
		t.Fatalf("got %s, want %s", s, want)
	}
	for _, bad := range []string{"10.0.0.0/33", "lb.internal", "10.0.0.1/x"} {
		if _, err := parsePrefixes(bad); err == nil {
			t.Errorf("parsePrefixes(%q): got no error", bad)
		}
	}
}

// TestRaiseFDLimit: the soft limit ends at the hard limit.
func TestRaiseFDLimit(t *testing.T) {
	var before syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &before); err != nil {
		t.Fatal(err)
	}
	lowered := before
	lowered.Cur = min(before.Max, 64)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lowered); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &before); err != nil {
			t.Error(err)
		}
	})
	got, err := raiseFDLimit()
	if err != nil {
		t.Fatal(err)
	}
	var after syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &after); err != nil {
		t.Fatal(err)
	}
	if got != before.Max || after.Cur != before.Max {
		t.Fatalf("got %d, soft limit now %d, want both %d (the hard limit)", got, after.Cur, before.Max)
	}
}
