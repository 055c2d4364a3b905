package fleet

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"testing"
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
