package pipeline

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPoolClassOf(t *testing.T) {
	tests := []struct {
		size, capacity int
		pooled         bool
	}{
		{1, 4 << 10, true},
		{4 << 10, 4 << 10, true},
		{4<<10 + 1, 8 << 10, true},
		{1 << 20, 1 << 20, true},
		{1<<20 + 1, 2 << 20, true},
		{5<<20 + 7, 6 << 20, true},
		{64 << 20, 64 << 20, true},
		{128 << 20, 128 << 20, true},
		{128<<20 + 1, 128<<20 + 1, false},
	}
	seen := map[int]int{}
	for _, tt := range tests {
		idx, c, ok := classOf(tt.size)
		if c != tt.capacity || ok != tt.pooled {
			t.Errorf("classOf(%d) = cap %d pooled %v, want cap %d pooled %v", tt.size, c, ok, tt.capacity, tt.pooled)
		}
		if ok {
			if idx < 0 || idx >= numClasses {
				t.Errorf("classOf(%d) index %d out of [0,%d)", tt.size, idx, numClasses)
			}
			if prev, dup := seen[idx]; dup && prev != c {
				t.Errorf("class %d holds both %d and %d", idx, prev, c)
			}
			seen[idx] = c
		}
	}
	// Every class capacity maps to itself, so Put finds its list.
	for size := 1; size <= maxPooled; size += 777 << 10 {
		idx, c, _ := classOf(size)
		idx2, c2, ok := classOf(c)
		if !ok || idx2 != idx || c2 != c {
			t.Fatalf("classOf(classOf(%d).cap=%d) = %d,%d,%v, want %d,%d,true", size, c, idx2, c2, ok, idx, c)
		}
	}
}

func TestPoolGetPut(t *testing.T) {
	p := NewPool(16 << 20)
	b, err := p.Get(t.Context(), 5<<20+3)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 5<<20+3 || cap(b) != 6<<20 {
		t.Fatalf("len %d cap %d, want len %d cap %d", len(b), cap(b), 5<<20+3, 6<<20)
	}
	if got := p.InUse(); got != 6<<20 {
		t.Fatalf("InUse = %d, want %d (charged by capacity)", got, 6<<20)
	}
	p.Put(b[:10]) // a reslice that keeps its start releases the same
	if got := p.InUse(); got != 0 {
		t.Fatalf("InUse after Put = %d, want 0", got)
	}
	if _, err := p.Get(t.Context(), 17<<20); !errors.Is(err, ErrOverBudget) {
		t.Fatalf("Get over budget: err %v, want ErrOverBudget", err)
	}
	if b, err := p.Get(t.Context(), 0); err != nil || b != nil {
		t.Fatalf("Get(0) = %v, %v; want nil, nil", b, err)
	}
	if _, err := p.Get(t.Context(), -1); err == nil {
		t.Fatal("Get(-1) did not fail")
	}
}

// A buffer larger than every class is served unpooled; Put still releases
// its budget.
func TestPoolForeignSize(t *testing.T) {
	p := NewPool(256 << 20)
	b, err := p.Get(t.Context(), maxPooled+5)
	if err != nil {
		t.Fatal(err)
	}
	if p.InUse() != maxPooled+5 {
		t.Fatalf("InUse = %d, want %d", p.InUse(), maxPooled+5)
	}
	p.Put(b)
	if p.InUse() != 0 {
		t.Fatalf("InUse after Put = %d, want 0", p.InUse())
	}

	// A budget smaller than the class but not the size: exact buffer.
	small := NewPool(3 << 20 / 2)
	b, err = small.Get(t.Context(), 1<<20+1)
	if err != nil {
		t.Fatal(err)
	}
	if cap(b) != 1<<20+1 || small.InUse() != 1<<20+1 {
		t.Fatalf("cap %d InUse %d, want both %d", cap(b), small.InUse(), 1<<20+1)
	}
	small.Put(b)
	if small.InUse() != 0 {
		t.Fatalf("InUse after Put = %d, want 0", small.InUse())
	}
}

func TestPoolBudgetUnderConcurrency(t *testing.T) {
	const budget = 8 << 20
	p := NewPool(budget)
	var out, peak atomic.Int64
	sizes := []int{1 << 20, 3 << 20, 64 << 10, 2<<20 + 1, 5 << 20, 8 << 20}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				size := sizes[(g+i)%len(sizes)]
				b, err := p.Get(t.Context(), size)
				if err != nil {
					t.Error(err)
					return
				}
				now := out.Add(int64(cap(b)))
				for {
					old := peak.Load()
					if now <= old || peak.CompareAndSwap(old, now) {
						break
					}
				}
				if now > budget {
					t.Errorf("%d bytes out, budget %d", now, budget)
				}
				b[0], b[len(b)-1] = byte(g), byte(i) // touch it
				out.Add(-int64(cap(b)))
				p.Put(b)
			}
		})
	}
	wg.Wait()
	if p.InUse() != 0 {
		t.Fatalf("InUse after all Puts = %d, want 0", p.InUse())
	}
	t.Logf("peak %d of %d bytes", peak.Load(), budget)
}

func TestPoolGetUnblocksOnPut(t *testing.T) {
	p := NewPool(4 << 20)
	b, err := p.Get(t.Context(), 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte)
	go func() {
		b2, err := p.Get(t.Context(), 1<<20)
		if err != nil {
			t.Error(err)
		}
		got <- b2
	}()
	select {
	case <-got:
		t.Fatal("Get returned while the budget was spent")
	case <-time.After(50 * time.Millisecond):
	}
	p.Put(b)
	select {
	case b2 := <-got:
		if len(b2) != 1<<20 {
			t.Fatalf("len %d, want %d", len(b2), 1<<20)
		}
		p.Put(b2)
	case <-time.After(5 * time.Second):
		t.Fatal("Get still blocked after Put")
	}
	if p.InUse() != 0 {
		t.Fatalf("InUse = %d, want 0", p.InUse())
	}
}

// The head of the queue is served first: small requests do not overtake a
// large one that waits.
func TestPoolFIFO(t *testing.T) {
	p := NewPool(4 << 20)
	a, _ := p.Get(t.Context(), 2<<20)
	b, _ := p.Get(t.Context(), 2<<20)
	order := make(chan string, 2)
	bigIn := make(chan []byte, 1)
	go func() {
		x, err := p.Get(t.Context(), 4<<20)
		if err != nil {
			t.Error(err)
		}
		order <- "big"
		bigIn <- x
	}()
	waitWaiters(t, p, 1)
	go func() {
		x, err := p.Get(t.Context(), 1<<20)
		if err != nil {
			t.Error(err)
		}
		order <- "small"
		p.Put(x)
	}()
	waitWaiters(t, p, 2)
	p.Put(a) // 2 MiB free: the small one fits but must wait its turn
	select {
	case who := <-order:
		t.Fatalf("%s served before the head of the queue could be", who)
	case <-time.After(50 * time.Millisecond):
	}
	// Nor does a new request that would fit.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	if x, err := p.Get(ctx, 1<<20); err == nil {
		p.Put(x)
		t.Fatal("a new Get overtook the queue")
	}
	p.Put(b)
	if who := <-order; who != "big" {
		t.Fatalf("first served %q, want big", who)
	}
	p.Put(<-bigIn)
	if who := <-order; who != "small" {
		t.Fatalf("second served %q, want small", who)
	}
}

func waitWaiters(t *testing.T, p *Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		got := len(p.waiters)
		p.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPoolContextCancel(t *testing.T) {
	p := NewPool(1 << 20)
	b, _ := p.Get(t.Context(), 1<<20)

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.Get(ctx, 1<<20); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want DeadlineExceeded", err)
	}
	p.mu.Lock()
	left := len(p.waiters)
	p.mu.Unlock()
	if left != 0 || p.InUse() != 1<<20 {
		t.Fatalf("after cancel: %d waiters, InUse %d; want 0 and %d", left, p.InUse(), 1<<20)
	}

	done, cancel2 := context.WithCancel(t.Context())
	cancel2()
	if _, err := p.Get(done, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a done ctx: err %v, want Canceled", err)
	}

	// A cancelled waiter at the head must not block those behind it.
	ctx3, cancel3 := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := p.Get(ctx3, 1<<20)
		errc <- err
	}()
	waitWaiters(t, p, 1)
	got := make(chan []byte, 1)
	go func() {
		x, err := p.Get(t.Context(), 512<<10)
		if err != nil {
			t.Error(err)
		}
		got <- x
	}()
	waitWaiters(t, p, 2)
	cancel3()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want Canceled", err)
	}
	p.Put(b)
	p.Put(<-got)
	if p.InUse() != 0 {
		t.Fatalf("InUse = %d, want 0", p.InUse())
	}
}

func TestPoolAllocs(t *testing.T) {
	p := NewPool(64 << 20)
	ctx := t.Context()
	for _, size := range []int{4 << 10, 1 << 20, 5<<20 + 1, 64 << 20} {
		p.Put(mustGet(t, p, size)) // warm the class
		allocs := testing.AllocsPerRun(100, func() {
			b, err := p.Get(ctx, size)
			if err != nil {
				panic(err)
			}
			p.Put(b)
		})
		if allocs != 0 {
			t.Errorf("Get/Put of %d bytes: %v allocs per run, want 0", size, allocs)
		}
	}
}

func mustGet(t *testing.T, p *Pool, size int) []byte {
	t.Helper()
	b, err := p.Get(t.Context(), size)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func BenchmarkPoolGetPut(b *testing.B) {
	p := NewPool(1 << 30)
	ctx := b.Context()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			buf, err := p.Get(ctx, 8<<20)
			if err != nil {
				b.Error(err)
				return
			}
			p.Put(buf)
		}
	})
}

// TestPoolClassSizeMatchesClassOf checks the inverse used for eviction.
func TestPoolClassSizeMatchesClassOf(t *testing.T) {
	for idx := range numClasses {
		got, c, ok := classOf(classSize(idx))
		if !ok || got != idx || c != classSize(idx) {
			t.Fatalf("classOf(classSize(%d)) = %d, %d, %v; want %d, %d, true", idx, got, c, ok, idx, classSize(idx))
		}
	}
}

// TestPoolIdlePlusInUseWithinBudget: buffers kept idle for reuse count
// against the budget too, so a mix of sizes can't make the pool hold more
// than its budget (the fleet benchmark's RSS overshoot with sync.Pool).
func TestPoolIdlePlusInUseWithinBudget(t *testing.T) {
	const budget = 16 << 20
	p := NewPool(budget)
	ctx := t.Context()
	check := func(when string) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.out+p.idle > budget || p.inUse > budget {
			t.Fatalf("%s: held %d + idle %d (charged %d) > budget %d", when, p.out, p.idle, p.inUse, budget)
		}
	}
	for round := range 20 {
		size := (round%4 + 1) << 20 // 1..4 MiB classes in turn
		var bufs [][]byte
		for {
			c, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
			b, err := p.Get(c, size)
			cancel()
			if err != nil {
				break
			}
			bufs = append(bufs, b)
			check("after Get")
		}
		if len(bufs) == 0 {
			t.Fatalf("round %d: no buffer of %d bytes from an idle pool", round, size)
		}
		for _, b := range bufs {
			p.Put(b)
			check("after Put")
		}
	}
	// Reuse: a second round of the same size allocates nothing new.
	b, err := p.Get(ctx, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	p.Put(b)
	allocs := testing.AllocsPerRun(50, func() {
		b, _ := p.Get(ctx, 4<<20)
		p.Put(b)
	})
	if allocs != 0 {
		t.Fatalf("steady Get/Put of an idle class: %v allocs, want 0", allocs)
	}
}

// GetN charges all its buffers at once: while they do not fit, it holds
// none of them (so a smaller Get behind it is not starved by a partial
// hold, and two GetN cannot deadlock); a canceled GetN gives nothing back
// because it took nothing; too many buffers for the budget fail at once.
func TestPoolGetN(t *testing.T) {
	p := NewPool(4 * mib)
	first, err := p.Get(t.Context(), 2*mib)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	bufs := make([][]byte, 3)
	if err := p.GetN(ctx, bufs, mib); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetN of 3 MiB with 2 MiB free: err %v, want the context's", err)
	}
	if got := p.InUse(); got != 2*mib {
		t.Fatalf("in use after a GetN that did not fit: %d, want %d (nothing held)", got, 2*mib)
	}
	done := make(chan error, 1)
	go func() { done <- p.GetN(t.Context(), bufs, mib) }()
	time.Sleep(50 * time.Millisecond)
	if got := p.InUse(); got != 2*mib {
		t.Fatalf("in use while GetN waits: %d, want %d", got, 2*mib)
	}
	p.Put(first)
	if err := <-done; err != nil {
		t.Fatalf("GetN after Put: %v", err)
	}
	for i, b := range bufs {
		if len(b) != mib {
			t.Fatalf("buffer %d: len %d, want %d", i, len(b), mib)
		}
		p.Put(b)
	}
	if got := p.InUse(); got != 0 {
		t.Fatalf("in use after putting every buffer: %d", got)
	}
	if err := p.GetN(t.Context(), make([][]byte, 5), mib); !errors.Is(err, ErrOverBudget) {
		t.Fatalf("GetN of 5 MiB from a 4 MiB budget: err %v, want ErrOverBudget", err)
	}
}

// TestPoolReusesUnderContention: writers that each take several buffers
// (GetN, as the local sink's pipe) and queue for a spent budget get the
// buffers the others gave back, not new ones. Counting a charge granted to
// a waiter as in use while the buffers that will serve it still sat idle
// once made Put drop returned buffers, and the waiters then allocated
// fresh ones: 256 uploads of 8 MiB at once allocated 70 MB/s of buffers
// that the kernel had to fault in and zero.
func TestPoolReusesUnderContention(t *testing.T) {
	const per, writers, rounds = 6, 16, 200
	p := NewPool(2 * per * mib) // two writers' worth: the rest queue
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			bufs := make([][]byte, per)
			for range rounds {
				if err := p.GetN(t.Context(), bufs, mib); err != nil {
					t.Error(err)
					return
				}
				for _, b := range bufs {
					p.Put(b)
				}
			}
		})
	}
	wg.Wait()
	p.mu.Lock()
	made, idle := p.made, p.idle
	p.mu.Unlock()
	// Never more buffers than the budget holds: every later charge is
	// served from the idle ones.
	t.Logf("%d buffers made, %d bytes idle", made, idle)
	if most := int64(2 * per); made > most {
		t.Fatalf("%d buffers allocated for %d GetN of %d; the budget holds %d", made, writers*rounds, per, most)
	}
	// Every buffer made came back and was kept: none was dropped.
	if idle != made*mib {
		t.Fatalf("idle %d after every buffer came back, want the %d made (%d)", idle, made, made*mib)
	}
}
