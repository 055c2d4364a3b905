package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuotaCommand: `roughy quota set` changes only the limits it names,
// accepts sizes, "unlimited" and "default", and refuses bad input; `quota
// show` prints them (here on the embedded store without a server).
func TestQuotaCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		c := cli{stdout: &out, stderr: &errb, lookup: envMap(nil)}
		code := c.run(context.Background(), append(args, "--data-dir", dir))
		return code, out.String() + errb.String()
	}
	for _, bad := range [][]string{
		{"quota"}, {"quota", "set"}, {"quota", "frob", "--account", "a"},
		{"quota", "set", "--account", "a", "--uploads", "-1"},
		{"quota", "set", "--account", "a", "--uploads", "1.5"},
		{"quota", "set", "--account", "a", "--bytes-stored", "lots"},
		{"quota", "show", "--account", "a", "--uploads", "3"},
	} {
		if code, out := run(bad...); code != 2 {
			t.Errorf("roughy %v: exit %d, want 2 (%s)", bad, code, out)
		}
	}
	if code, out := run("quota", "set", "--account", "a", "--bytes-stored", "2GiB", "--uploads", "4"); code != 0 {
		t.Fatalf("quota set: exit %d: %s", code, out)
	}
	_, out := run("quota", "set", "--account", "a", "--uploads", "unlimited", "--bytes-reserved", "1KiB")
	for _, want := range []string{"bytes_stored    0     2147483648", "uploads         0     unlimited", "bytes_reserved  0     1024"} {
		if !strings.Contains(out, want) {
			t.Errorf("quota set output lacks %q:\n%s", want, out)
		}
	}
	_, out = run("quota", "set", "--account", "a", "--bytes-stored", "default")
	if !strings.Contains(out, "bytes_stored    0     default") || !strings.Contains(out, "bytes_reserved  0     1024") {
		t.Errorf("quota set --bytes-stored default: want it back to default, the rest kept:\n%s", out)
	}
	// 0 is a limit of zero, unlimited is spelled out, clear is the defaults.
	_, out = run("quota", "set", "--account", "a", "--uploads", "0", "--bytes-stored", "0")
	if !strings.Contains(out, "bytes_stored    0     0") || !strings.Contains(out, "uploads         0     0") {
		t.Errorf("quota set --uploads 0 --bytes-stored 0: want limits of zero:\n%s", out)
	}
	_, out = run("quota", "clear", "--account", "a")
	for _, want := range []string{"bytes_stored    0     default", "uploads         0     default", "bytes_reserved  0     default"} {
		if !strings.Contains(out, want) {
			t.Errorf("quota clear output lacks %q:\n%s", want, out)
		}
	}
	if code, out := run("serve", "--quota-uploads", "-2"); code != 2 {
		t.Errorf("serve --quota-uploads -2: exit %d, want 2 (%s)", code, out)
	}
}
