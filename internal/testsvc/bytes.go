package testsvc

import (
	"bytes"
	"fmt"
)

// SameBytes is nil when got equals want, else an error with both lengths
// and the first byte at which they differ. A finished upload's sha256 is
// computed from the bytes as they passed the proxy and proves nothing
// about what storage holds, so tests compare a download with its source
// byte for byte; the first difference tells a truncated or shifted write
// from a wrong one.
func SameBytes(got, want []byte) error {
	if bytes.Equal(got, want) {
		return nil
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Errorf("got %d bytes, want %d; first difference at byte %d", len(got), len(want), i)
}
