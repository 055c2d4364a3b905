package testsvc

import (
	"io"
	"time"
)

// PacedReader reads R at about Rate bytes a second, in reads of at most
// 64 KiB, so a body lasts as long as a test needs whatever the machine.
type PacedReader struct {
	R    io.Reader
	Rate int
}

func (p *PacedReader) Read(b []byte) (int, error) {
	n, err := p.R.Read(b[:min(len(b), 64<<10)])
	time.Sleep(time.Duration(n) * time.Second / time.Duration(p.Rate))
	return n, err
}
