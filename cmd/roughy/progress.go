package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progressBar draws upload progress on a terminal ("\r" redraws, at most
// every 100ms), or prints a line per acknowledged chunk elsewhere. A nil
// writer draws nothing.
type progressBar struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	total    int64
	base     int64 // offset the run started from, for the rate
	cur      int64
	start    time.Time
	lastDraw time.Time
}

func newProgressBar(w io.Writer, total, base int64) *progressBar {
	p := &progressBar{w: w, total: total, base: base, cur: base, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

// set moves the bar to offset n.
func (p *progressBar) set(n int64) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur = n
	if p.tty && time.Since(p.lastDraw) >= 100*time.Millisecond {
		p.draw()
	}
}

// chunkDone marks an acknowledged PATCH.
func (p *progressBar) chunkDone() {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		p.draw()
		return
	}
	fmt.Fprintln(p.w, p.line())
}

// finish draws the final state and ends the line.
func (p *progressBar) finish() {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		p.draw()
		fmt.Fprintln(p.w)
	}
}

func (p *progressBar) draw() {
	p.lastDraw = time.Now()
	fmt.Fprintf(p.w, "\r%s\x1b[K", p.line())
}

func (p *progressBar) line() string {
	const width = 30
	frac := 1.0
	if p.total > 0 {
		frac = float64(p.cur) / float64(p.total)
	}
	filled := int(frac * width)
	bar := strings.Repeat("=", filled)
	if filled < width {
		bar += ">" + strings.Repeat(" ", width-filled-1)
	}
	rate := 0.0
	if el := time.Since(p.start).Seconds(); el > 0 {
		rate = float64(p.cur-p.base) / el
	}
	return fmt.Sprintf("[%s] %5.1f%%  %s / %s  %s/s", bar, frac*100,
		humanBytes(float64(p.cur)), humanBytes(float64(p.total)), humanBytes(rate))
}

// humanBytes prints n in binary units with one decimal.
func humanBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", n)
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}
