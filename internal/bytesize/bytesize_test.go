package bytesize

import "testing"

func TestParse(t *testing.T) {
	for in, want := range map[string]int64{
		"1048576": 1 << 20, "1GiB": 1 << 30, "512MiB": 512 << 20, "64MB": 64e6,
		"64M": 64 << 20, "256KiB": 256 << 10, "2k": 2048, "1.5G": 3 << 29, " 7 B ": 7, "1TiB": 1 << 40,
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1", "1XB", "9999999999TiB", "1.2.3M"} {
		if n, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %d, want an error", in, n)
		}
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0", 1000: "1000", 1 << 10: "1KiB", 256 << 10: "256KiB", 5 << 20: "5MiB",
		3 << 29: "1536MiB", 50 << 30: "50GiB", 1 << 40: "1TiB",
	} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
	}
}
