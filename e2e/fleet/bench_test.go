package fleet

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkFleetThroughput sends 32 concurrent uploads of 8 MiB (two
// PATCHes each) to one node, then spread over three nodes, all sharing one
// Redis and one versitygw on this machine. Reports aggregate MB/s. On a
// 2-core machine the nodes, Redis, versitygw and the client share the
// cores, so three nodes cannot be faster than one here; the figure shows
// what the shared session store costs, not fleet scaling.
func BenchmarkFleetThroughput(b *testing.B) {
	const uploads, size = 32, 8 << 20
	for _, nodes := range []int{1, 3} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			f := startFleet(b, nodes)
			src := randomBytes(size)
			b.SetBytes(uploads * size)
			for b.Loop() {
				var wg sync.WaitGroup
				errs := make(chan error, uploads)
				for i := range uploads {
					n := f.nodes[i%nodes]
					wg.Go(func() {
						a, err := send(b.Context(), "POST", n.URL+tusPath, map[string]string{
							"Upload-Length": fmt.Sprint(size), "Upload-Metadata": "type dmlkZW8=,filename YmVuY2guYmlu",
						}, nil)
						if err != nil || a.Status != http.StatusCreated {
							errs <- fmt.Errorf("POST: %d %s %v", a.Status, bytes.TrimSpace(a.Body), err)
							return
						}
						loc := a.Header.Get("Location")
						for j, off := range []int{0, size / 2} {
							m := f.nodes[(i+j)%nodes]
							a, err := patch(b.Context(), m.at(loc), int64(off), src[off:off+size/2])
							if err != nil || a.Status != http.StatusNoContent {
								errs <- fmt.Errorf("PATCH: %d %s %v", a.Status, bytes.TrimSpace(a.Body), err)
								return
							}
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
			}
		})
	}
}

// takeoverTrials is how many kills and how many silent client losses
// BenchmarkTakeover measures (at least 20 each, for a p95).
var takeoverTrials = flag.Int("takeover-trials", 20, "trials of each kind in BenchmarkTakeover")

// BenchmarkTakeover measures how soon an upload is writable again, on
// three nodes with the default 10 s lease:
//   - kill: the node streaming a PATCH is killed (SIGKILL); the time from
//     the kill to the first accepted resume PATCH (1 MiB) on another node;
//   - silent: a client goes silent mid-PATCH without closing; the time
//     from its first request on a new connection (HEAD, PATCH, and again
//     after a 409) to the accepted PATCH, alternately on the same node and
//     on another.
//
// on standalone Redis and on Cluster. It reports p50, p95 and max of each
// in ms. Run it alone:
//
//	go test ./e2e/fleet -run '^$' -bench Takeover -benchtime 1x
func BenchmarkTakeover(b *testing.B) {
	b.Run("standalone", func(b *testing.B) { benchTakeover(b, startFleet(b, 3, "--lease-ttl", "10s")) })
	b.Run("cluster", func(b *testing.B) { benchTakeover(b, startClusterFleet(b, 3, "--lease-ttl", "10s")) })
}

func benchTakeover(b *testing.B, f *fleet) {
	const length = 32 << 20
	src := randomBytes(length)
	var kills, silent []time.Duration
	for b.Loop() {
		for i := range *takeoverTrials {
			victim, other := f.nodes[i%3], f.nodes[(i+1)%3]
			loc, _ := create(b, other, length)
			kills = append(kills, killAndResume(b, victim, other, loc, src))
			victim.start()
		}
		for i := range *takeoverTrials {
			a, to := f.nodes[i%3], f.nodes[i%3]
			if i%2 == 1 {
				to = f.nodes[(i+1)%3]
			}
			loc, _ := create(b, a, length)
			c := stallPatch(b, a, loc, length, src[:5<<20])
			time.Sleep(300 * time.Millisecond)
			start := time.Now()
			resume(b, to.at(loc), src, 1<<20)
			silent = append(silent, time.Since(start))
			c.Close()
		}
	}
	report := func(name string, d []time.Duration) {
		slices.Sort(d)
		q := func(p float64) time.Duration { return d[min(len(d)-1, int(math.Ceil(p*float64(len(d))))-1)] }
		b.ReportMetric(float64(q(0.50).Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(q(0.95).Microseconds())/1000, name+"-p95-ms")
		b.ReportMetric(float64(d[len(d)-1].Microseconds())/1000, name+"-max-ms")
		b.Logf("%s: %d trials, p50 %v, p95 %v, max %v", name, len(d), q(0.50), q(0.95), d[len(d)-1])
	}
	report("kill", kills)
	report("silent", silent)
}
