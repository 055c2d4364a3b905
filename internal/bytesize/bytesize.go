// Package bytesize reads and writes byte counts as people type them
// ("1GiB", "512MiB", "64MB", "1048576"): the one parser behind the
// server's size flags, the load generator's and the benchmarks'.
package bytesize

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// units are the accepted suffixes, lower case: binary for the bare
// letters and the IEC names, decimal for kB/MB/GB/TB.
var units = map[string]float64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

// splitUnit splits t after its last digit or '.': the number and the
// lower-case unit, both trimmed.
func splitUnit(t string) (num, unit string) {
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') && t[i-1] != '.' {
		i--
	}
	return strings.TrimSpace(t[:i]), strings.ToLower(strings.TrimSpace(t[i:]))
}

// Parse parses a size such as "1GiB", "512MiB", "64MB", "1.5G" or
// "1048576" (bytes). Negative sizes and sizes past int64 are refused.
func Parse(s string) (int64, error) {
	num, unit := splitUnit(strings.TrimSpace(s))
	mult, ok := units[unit]
	if !ok || num == "" {
		return 0, fmt.Errorf("invalid size %q (want e.g. 1GiB, 512MiB, 64MB, 1048576)", s)
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		if n < 0 || (mult >= 1 && float64(n) > math.MaxInt64/mult) {
			return 0, fmt.Errorf("invalid size %q (negative or too large)", s)
		}
		return n * int64(mult), nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*mult >= math.MaxInt64 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return int64(math.Round(f * mult)), nil
}

// Format prints n in the largest binary unit that divides it evenly
// ("1GiB", "256KiB"), else as plain bytes ("1000").
func Format(n int64) string {
	for _, u := range []struct {
		name string
		v    int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.v == 0 {
			return strconv.FormatInt(n/u.v, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}
