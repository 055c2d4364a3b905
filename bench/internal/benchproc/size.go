package benchproc

import (
	"fmt"
	"strconv"
	"strings"
)

// SizeFlag is a flag.Value that parses sizes such as 2GiB, 512MiB, 64M or plain bytes.
type SizeFlag int64

func (s *SizeFlag) String() string { return FormatSize(int64(*s)) }

// Set parses v as a size (ParseSize); it is flag.Value's Set.
func (s *SizeFlag) Set(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = SizeFlag(n)
	return nil
}

// ParseSize parses 2GiB, 512MiB, 64M, 1000 (bytes).
func ParseSize(v string) (int64, error) {
	v = strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if strings.HasSuffix(v, u.suf) {
			v, mult = strings.TrimSuffix(v, u.suf), u.m
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("benchproc: bad size %q", v)
	}
	return n * mult, nil
}

// FormatSize is the inverse of ParseSize for whole GiB and MiB.
func FormatSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	default:
		return strconv.FormatInt(n, 10)
	}
}
