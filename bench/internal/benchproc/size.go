package benchproc

import (
	"github.com/roughy/ingest/internal/bytesize"
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

// ParseSize parses 2GiB, 512MiB, 64M, 1000 (bytes): bytesize.Parse.
func ParseSize(v string) (int64, error) { return bytesize.Parse(v) }

// FormatSize is the inverse of ParseSize for whole TiB, GiB, MiB and KiB.
func FormatSize(n int64) string { return bytesize.Format(n) }
