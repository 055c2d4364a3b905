package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// counters are the run's live totals, updated by the workers.
type counters struct {
	running, done, failed, corrupt, aborts, sent atomic.Int64
}

// progressLine is the one-line state of the run after el.
func progressLine(el time.Duration, c *counters, total int) string {
	mib := float64(c.sent.Load()) / (1 << 20)
	rate := 0.0
	if s := el.Seconds(); s > 0 {
		rate = mib / s
	}
	return fmt.Sprintf("loadtest %s  running %d  done %d/%d  failed %d  corrupt %d  aborts %d  %.0f MiB  %.1f MiB/s",
		el.Round(time.Second), c.running.Load(), c.done.Load(), total, c.failed.Load(), c.corrupt.Load(), c.aborts.Load(), mib, rate)
}

// isTerminal reports whether f is a character device (a terminal), where
// the progress line is redrawn in place.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress redraws the line on w every second when live (a terminal),
// else prints it every 5 s, until stopped.
func progress(w io.Writer, live bool, c *counters, total int, start time.Time) (stop func()) {
	every, prefix, suffix := 5*time.Second, "", "\n"
	if live {
		every, prefix, suffix = time.Second, "\r\033[K", ""
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-quit:
				if live {
					fmt.Fprint(w, prefix+progressLine(time.Since(start), c, total)+"\n")
				}
				return
			case <-t.C:
				fmt.Fprint(w, prefix+progressLine(time.Since(start), c, total)+suffix)
			}
		}
	})
	return func() { close(quit); wg.Wait() }
}
