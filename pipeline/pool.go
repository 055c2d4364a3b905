package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// ErrOverBudget means a buffer was asked for that is larger than the whole
// budget, so waiting could never succeed.
var ErrOverBudget = errors.New("pipeline: buffer larger than the memory budget")

// Size classes of pooled buffers. Small ones are powers of two from 4 KiB
// to 1 MiB; above that, multiples of 1 MiB up to maxPooled, so that an S3
// part of 5 MiB + a few bytes costs 6 MiB of budget, not 8.
const (
	minClassShift = 12 // 4 KiB
	mibShift      = 20
	mib           = 1 << mibShift
	maxPooled     = 128 << 20
	numSmall      = mibShift - minClassShift + 1 // 4 KiB … 1 MiB
	numClasses    = numSmall + maxPooled>>mibShift - 1
)

// classOf returns the index and capacity of the class a buffer of size
// bytes is served from; ok is false above maxPooled.
func classOf(size int) (idx, capacity int, ok bool) {
	switch {
	case size <= 1<<minClassShift:
		return 0, 1 << minClassShift, true
	case size <= mib:
		shift := bits.Len(uint(size - 1))
		return shift - minClassShift, 1 << shift, true
	case size <= maxPooled:
		m := (size + mib - 1) >> mibShift
		return numSmall + m - 2, m << mibShift, true
	}
	return 0, size, false
}

// Pool hands out byte buffers under a global memory budget
// (--max-buffer-memory). Buffers are kept in size-classed free lists and
// reused; the budget is charged by capacity, so what counts is the memory
// actually handed out, not what callers asked for.
//
// Ownership: a buffer returned by Get belongs to the caller until the
// caller passes it to Put, exactly once; after Put the caller must not
// touch it (the next Get may hand it to another goroutine). A buffer handed
// to another goroutine (an S3 part upload) carries that duty with it: the
// goroutine that finishes with it puts it back. Put must receive the slice
// as Get returned it, or a reslice of it that keeps its start (b[:n]), so
// its capacity is the one that was charged.
//
// Waiters are served first come, first served: a large request at the head
// of the queue is not starved by a stream of small ones.
type Pool struct {
	budget int64

	mu      sync.Mutex
	inUse   int64
	waiters []*poolWaiter // FIFO

	// free holds, per class, pointers to the first byte of idle buffers
	// of that class's capacity, guarded by mu. Plain free lists, not
	// sync.Pool: a sync.Pool drops idle buffers at every GC, so a busy
	// server allocated fresh part buffers while the dropped ones still
	// waited for collection, and its RSS passed the budget (bench fleet
	// scenario: 1.06–1.18 GiB with a 1 GiB budget). idle counts their
	// bytes: held (out) plus idle never passes the budget (see take and Put).
	free [numClasses][]unsafe.Pointer
	idle int64
	// out is the bytes of the buffers callers hold. It differs from inUse
	// between a charge and its take: a waiter granted its charge by a Put
	// has not taken its buffers yet, and the idle ones that will serve it
	// must not count twice. Memory held is out+idle.
	out int64
	// made counts the buffers allocated (not taken from free).
	made int64

	// waits and waitNanos count the charges that had to queue and their
	// time in the queue (/metrics: is the budget too small?).
	waits     atomic.Int64
	waitNanos atomic.Int64
}

type poolWaiter struct {
	n     int64
	ready chan struct{} // closed once n bytes were charged for the waiter
}

// NewPool returns a pool that never has more than budget bytes of buffers
// out at once.
func NewPool(budget int64) *Pool {
	return &Pool{budget: budget}
}

// Budget returns the pool's byte budget.
func (p *Pool) Budget() int64 { return p.budget }

// InUse returns the bytes (by capacity) of buffers currently out.
func (p *Pool) InUse() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse
}

// Waits returns how many buffer requests had to wait for the budget and
// their total time waiting, since the pool was made.
func (p *Pool) Waits() (n int64, total time.Duration) {
	return p.waits.Load(), time.Duration(p.waitNanos.Load())
}

// Get returns a buffer of len size, owned by the caller until Put. It
// blocks while the budget is spent and returns ctx.Err() if ctx ends
// first. A size larger than the budget gives ErrOverBudget at once.
func (p *Pool) Get(ctx context.Context, size int) ([]byte, error) {
	if size < 0 {
		return nil, fmt.Errorf("pipeline: pool: negative buffer size %d", size)
	}
	if size == 0 {
		return nil, nil
	}
	idx, capacity, pooled := classOf(size)
	n := int64(capacity)
	if n > p.budget && int64(size) <= p.budget {
		// The class would not fit a small budget but the size does: serve
		// an exact, unpooled buffer.
		capacity, pooled, n = size, false, int64(size)
	}
	if n > p.budget {
		return nil, fmt.Errorf("%w: %d bytes asked, budget %d", ErrOverBudget, n, p.budget)
	}
	if err := p.charge(ctx, n); err != nil {
		return nil, err
	}
	return p.take(idx, capacity, size, pooled), nil
}

// GetN fills bufs with buffers of len size, charged to the budget in one
// go: it waits until all of them fit, never holding some while waiting
// for the rest, so writers that each need several buffers (the local
// sink's pipe) cannot deadlock on a budget they share. Each buffer is
// then owned and Put back like one from Get. It returns ctx.Err() if ctx
// ends first, and ErrOverBudget if they could never fit together.
func (p *Pool) GetN(ctx context.Context, bufs [][]byte, size int) error {
	if size <= 0 || len(bufs) == 0 {
		return fmt.Errorf("pipeline: pool: GetN of %d buffers of %d bytes", len(bufs), size)
	}
	idx, capacity, pooled := classOf(size)
	n := int64(capacity) * int64(len(bufs))
	if n > p.budget {
		return fmt.Errorf("%w: %d buffers of %d bytes asked, budget %d", ErrOverBudget, len(bufs), capacity, p.budget)
	}
	if err := p.charge(ctx, n); err != nil {
		return err
	}
	for i := range bufs {
		bufs[i] = p.take(idx, capacity, size, pooled)
	}
	return nil
}

// charge counts n bytes against the budget, waiting in the FIFO queue
// while they do not fit.
func (p *Pool) charge(ctx context.Context, n int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	if len(p.waiters) == 0 && p.inUse+n <= p.budget {
		p.inUse += n
		p.mu.Unlock()
		return nil
	}
	w := &poolWaiter{n: n, ready: make(chan struct{})}
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	start := time.Now()
	defer func() {
		p.waits.Add(1)
		p.waitNanos.Add(int64(time.Since(start)))
	}()

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}

	p.mu.Lock()
	select {
	case <-w.ready:
		// Granted while ctx ended: give the charge back.
		p.inUse -= n
	default:
		p.removeWaiterLocked(w)
	}
	// Either way, waiters behind w may fit now.
	p.grantLocked()
	p.mu.Unlock()
	return ctx.Err()
}

// take returns a buffer of the class, from the free list or new. The
// budget was charged already. Before allocating, idle buffers of other
// classes are dropped until the held and idle bytes, the new buffer's
// included, fit the budget, so the pool never holds more than the budget.
func (p *Pool) take(idx, capacity, size int, pooled bool) []byte {
	p.mu.Lock()
	p.out += int64(capacity)
	if pooled {
		if l := p.free[idx]; len(l) > 0 {
			v := l[len(l)-1]
			l[len(l)-1] = nil
			p.free[idx] = l[:len(l)-1]
			p.idle -= int64(capacity)
			p.mu.Unlock()
			return unsafe.Slice((*byte)(v), capacity)[:size]
		}
	}
	for i := len(p.free) - 1; i >= 0 && p.out+p.idle > p.budget; i-- {
		_, c, _ := classOf(classSize(i))
		for len(p.free[i]) > 0 && p.out+p.idle > p.budget {
			l := p.free[i]
			l[len(l)-1] = nil
			p.free[i] = l[:len(l)-1]
			p.idle -= int64(c)
		}
	}
	p.made++
	p.mu.Unlock()
	if !pooled {
		return make([]byte, size)
	}
	return make([]byte, size, capacity)
}

// classSize returns the capacity of class idx.
func classSize(idx int) int {
	if idx < numSmall {
		return 1 << (idx + minClassShift)
	}
	return (idx - numSmall + 2) << mibShift
}

// Put gives b back to the pool and releases cap(b) bytes of the budget. b
// must come from Get (see Pool for the ownership rules). A buffer whose
// capacity is not a size class (larger than the largest class) is left to
// the GC, but its budget is released all the same.
func (p *Pool) Put(b []byte) {
	c := cap(b)
	if c == 0 {
		return
	}
	p.mu.Lock()
	p.inUse -= int64(c)
	p.out -= int64(c)
	// Kept idle, it still fits: held plus idle bytes were within the
	// budget with b among the held ones.
	if idx, capacity, pooled := classOf(c); pooled && capacity == c {
		p.free[idx] = append(p.free[idx], unsafe.Pointer(unsafe.SliceData(b[:c])))
		p.idle += int64(c)
	}
	if p.inUse < 0 {
		p.mu.Unlock()
		panic("pipeline: Pool.Put of a buffer that did not come from Get")
	}
	p.grantLocked()
	p.mu.Unlock()
}

// grantLocked charges and wakes the waiters at the head of the queue that
// fit in the budget. p.mu is held.
func (p *Pool) grantLocked() {
	i := 0
	for ; i < len(p.waiters); i++ {
		w := p.waiters[i]
		if p.inUse+w.n > p.budget {
			break
		}
		p.inUse += w.n
		close(w.ready)
	}
	if i > 0 {
		rest := copy(p.waiters, p.waiters[i:])
		clear(p.waiters[rest:])
		p.waiters = p.waiters[:rest]
	}
}

// removeWaiterLocked drops w from the queue. p.mu is held.
func (p *Pool) removeWaiterLocked(w *poolWaiter) {
	for i, x := range p.waiters {
		if x == w {
			copy(p.waiters[i:], p.waiters[i+1:])
			p.waiters[len(p.waiters)-1] = nil
			p.waiters = p.waiters[:len(p.waiters)-1]
			return
		}
	}
}
