package bolt

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	bbolt "go.etcd.io/bbolt"
)

// boltGroupMax bounds how many callers share one write transaction, so
// that one transaction's dirty pages stay small.
const boltGroupMax = 256

// boltGroup is a group commit over one bbolt file: the write transactions
// of concurrent callers run as one bbolt transaction with one fsync. bbolt
// has a single writer and every commit costs two fdatasyncs, so one
// transaction per creation, lease, commit, quota update and queued event
// made 32 concurrent uploads wait in line for each other's fsyncs.
//
// A caller that finds nobody committing leads: it runs every queued
// function in one transaction, tells each caller its result once the
// transaction is committed (and so fsynced), and hands the lead to the
// first caller that queued meanwhile. Nothing waits for more callers to
// come: a lone caller commits at once, and a batch forms from those that
// arrive while the previous one syncs. Unlike bbolt's DB.Batch there is no
// timer, so an idle store adds no latency.
//
// A function may run more than once: when one fails, the transaction is
// rolled back and the others run again without it. Each function must
// therefore only write through tx and assign (not accumulate) the results
// it hands back to its caller, which reads them after update returned.
type boltGroup struct {
	db *bbolt.DB

	mu    sync.Mutex
	queue []*boltCall
	busy  bool // a leader runs; set while the queue is not empty

	// commits counts the write transactions the group committed.
	commits atomic.Int64
}

// boltCall is one caller's function and, once wake said false, its result.
type boltCall struct {
	fn  func(*bbolt.Tx) error
	err error
	// wake gets true when the caller is to lead the next batch, false when
	// err is set.
	wake chan bool
}

// errBoltSolo tells a caller whose function failed after others in the
// same transaction to run it again alone: what it saw included writes
// that were rolled back.
var errBoltSolo = errors.New("sessionstore: run again alone")

// boltPanic carries a panic of a caller's function to that caller.
type boltPanic struct{ v any }

func (p boltPanic) Error() string { return fmt.Sprintf("panic: %v", p.v) }

// update runs fn in a write transaction shared with concurrent callers and
// returns once that transaction is durable, with fn's error or the
// commit's.
func (g *boltGroup) update(fn func(*bbolt.Tx) error) error {
	c := &boltCall{fn: fn, wake: make(chan bool, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	lead := !g.busy
	g.busy = true
	g.mu.Unlock()
	if !lead {
		lead = <-c.wake
	}
	if lead {
		g.lead(c)
	}
	if p, ok := errors.AsType[boltPanic](c.err); ok {
		panic(p.v)
	}
	if c.err == errBoltSolo {
		return g.db.Update(fn)
	}
	return c.err
}

// lead runs the queue's first calls (self among them: it was first in
// line) in one transaction, answers them, and passes the lead on to the
// next queued caller, if any.
func (g *boltGroup) lead(self *boltCall) {
	g.mu.Lock()
	n := min(len(g.queue), boltGroupMax)
	batch := g.queue[:n:n]
	g.queue = slices.Clone(g.queue[n:])
	g.mu.Unlock()

	g.run(slices.Clone(batch))
	for _, c := range batch {
		if c != self {
			c.wake <- false
		}
	}

	g.mu.Lock()
	if len(g.queue) == 0 {
		g.busy = false
		g.mu.Unlock()
		return
	}
	next := g.queue[0]
	g.mu.Unlock()
	next.wake <- true
}

// run commits batch's functions in one transaction and sets every call's
// err. A function that fails is taken out and the rest run again in a new
// transaction: the first one's error is its answer (it saw only committed
// state), a later one's is errBoltSolo.
func (g *boltGroup) run(batch []*boltCall) {
	for len(batch) > 0 {
		failed := -1
		err := g.db.Update(func(tx *bbolt.Tx) error {
			for i, c := range batch {
				if err := boltSafeCall(c.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		switch {
		case failed < 0:
			if err == nil {
				g.commits.Add(1)
			}
			for _, c := range batch {
				c.err = err
			}
			return
		case failed == 0:
			batch[0].err = err
		default:
			batch[failed].err = errBoltSolo
		}
		batch = slices.Delete(batch, failed, failed+1)
	}
}

// boltSafeCall runs fn, turning a panic into a boltPanic error so that the
// leader's batch goes on and the panic reaches fn's own caller.
func boltSafeCall(fn func(*bbolt.Tx) error, tx *bbolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = boltPanic{v: p}
		}
	}()
	return fn(tx)
}
