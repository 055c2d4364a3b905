package probe

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRunnerNiced runs a stand-in for ffprobe that prints its own nice
// value (field 19 of /proc/self/stat) where ffprobe prints the duration:
// it must be probeNice from its first instruction.
func TestRunnerNiced(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "ffprobe")
	script := "#!/bin/sh\nread -r s < /proc/self/stat\nset -- $s\nshift 18\necho \"$1\"\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		got, err := Runner{Path: bin}.Duration(t.Context(), "input")
		if err != nil {
			t.Fatal(err)
		}
		if got != "19.000" {
			t.Fatalf("ffprobe ran at nice %q, want 19", got)
		}
	}
}
