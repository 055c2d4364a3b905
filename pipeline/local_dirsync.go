package pipeline

import "sync"

// dirSyncs coalesces the fsyncs that make new directory entries durable:
// every upload's file is created in the same directory, and one fsync of a
// directory covers every entry made in it before that fsync started, so
// concurrent creations share one instead of queueing for one each.
type dirSyncs struct {
	// do fsyncs a directory (a seam so tests can see and hold the syncs).
	do func(dir string) error

	mu   sync.Mutex
	dirs map[string]*dirSync // by path; as many as the sink has directories
}

// dirSync is one directory's fsyncs: at most one runs, and the callers
// that come while it runs wait for the next, which one of them starts once
// the running one ended.
type dirSync struct {
	mu      sync.Mutex
	running *dirRound // nil when no fsync runs
	next    *dirRound // the round that starts once running ended
}

// dirRound is one fsync; done is closed once err is set.
type dirRound struct {
	done    chan struct{}
	err     error
	callers int // how many callers it answers (guarded by dirSync.mu)
}

func newDirSyncs() *dirSyncs {
	return &dirSyncs{do: syncDir, dirs: map[string]*dirSync{}}
}

// sync returns once an fsync of dir that started after the call did has
// ended, with its error.
func (s *dirSyncs) sync(dir string) error {
	s.mu.Lock()
	d := s.dirs[dir]
	if d == nil {
		d = &dirSync{}
		s.dirs[dir] = d
	}
	s.mu.Unlock()

	d.mu.Lock()
	if d.running == nil {
		r := &dirRound{done: make(chan struct{})}
		d.running = r
		d.mu.Unlock()
		return s.run(d, dir, r)
	}
	// The running fsync may have started before the caller's entry was
	// made: wait for the next one, and start it if nobody else did.
	r, first := d.next, false
	if r == nil {
		r, first = &dirRound{done: make(chan struct{})}, true
		d.next = r
	}
	r.callers++
	cur := d.running
	d.mu.Unlock()
	if !first {
		<-r.done
		return r.err
	}
	<-cur.done
	d.mu.Lock()
	d.running, d.next = r, nil
	d.mu.Unlock()
	return s.run(d, dir, r)
}

// run fsyncs dir as round r, the one running. While a next round waits,
// running stays set, so that callers coming meanwhile join that next one
// (it has not started) rather than start one of their own.
func (s *dirSyncs) run(d *dirSync, dir string, r *dirRound) error {
	r.err = s.do(dir)
	d.mu.Lock()
	if d.next == nil {
		d.running = nil
	}
	close(r.done)
	d.mu.Unlock()
	return r.err
}
