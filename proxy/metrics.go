package proxy

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// metrics are the proxy's Prometheus metrics, kept by hand: a few counters,
// a gauge and one latency histogram per route.
type metrics struct {
	bytesReceived atomic.Int64
	commits       atomic.Int64
	created       atomic.Int64
	completed     atomic.Int64
	deleted       atomic.Int64
	expired       atomic.Int64
	authFailures  atomic.Int64
	activeUploads atomic.Int64
	takeovers     atomic.Int64
	slowBodies    atomic.Int64

	mu       sync.Mutex
	requests map[requestKey]uint64
	latency  map[string]*histogram
}

type requestKey struct {
	route, method string
	status        int
}

// latencyBuckets are the upper bounds (seconds) of the request duration
// histogram; PATCHes of 64 MiB take seconds, HEADs milliseconds.
var latencyBuckets = []float64{0.001, 0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60}

type histogram struct {
	counts []uint64 // per bucket, plus +Inf
	sum    float64
	n      uint64
}

func newMetrics() *metrics {
	return &metrics{requests: map[requestKey]uint64{}, latency: map[string]*histogram{}}
}

func (m *metrics) observe(route, method string, status int, d time.Duration) {
	switch method {
	case "GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "PUT":
	default:
		method = "other"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[requestKey{route, method, status}]++
	h := m.latency[route]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(latencyBuckets)+1)}
		m.latency[route] = h
	}
	sec := d.Seconds()
	i, _ := slices.BinarySearch(latencyBuckets, sec)
	h.counts[i]++
	h.sum += sec
	h.n++
}

// write serves /metrics in the Prometheus text format.
func (m *metrics) write(ctx *fasthttp.RequestCtx, s *Server) {
	var b bytes.Buffer
	counter := func(name, help string, v int64) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	counter("roughy_upload_bytes_received_total", "Request body bytes read by upload requests.", m.bytesReceived.Load())
	counter("roughy_upload_commits_total", "Offset commits to the session store.", m.commits.Load())
	counter("roughy_uploads_created_total", "Uploads created.", m.created.Load())
	counter("roughy_uploads_completed_total", "Uploads completed (asset ready).", m.completed.Load())
	counter("roughy_uploads_deleted_total", "Uploads terminated by DELETE.", m.deleted.Load())
	counter("roughy_uploads_expired_total", "Abandoned uploads freed by the janitor.", m.expired.Load())
	counter("roughy_auth_failures_total", "Requests with an unknown API key.", m.authFailures.Load())
	counter("roughy_leases_taken_over_total", "Writes on this node that let go of their upload for a newer request.", m.takeovers.Load())
	counter("roughy_slow_bodies_total", "Upload bodies cut off below the minimum rate (--min-body-rate).", m.slowBodies.Load())
	fmt.Fprintf(&b, "# HELP roughy_active_uploads PATCH bodies being streamed now.\n# TYPE roughy_active_uploads gauge\nroughy_active_uploads %d\n", m.activeUploads.Load())
	fmt.Fprintf(&b, "# HELP roughy_inflight_requests Requests being served now.\n# TYPE roughy_inflight_requests gauge\nroughy_inflight_requests %d\n", s.inflight.Load())

	if s.cfg.Buffers != nil {
		fmt.Fprintf(&b, "# HELP roughy_buffer_bytes_in_use Part buffer memory taken from the budget.\n# TYPE roughy_buffer_bytes_in_use gauge\nroughy_buffer_bytes_in_use %d\n", s.cfg.Buffers.InUse())
		fmt.Fprintf(&b, "# HELP roughy_buffer_bytes_budget Part buffer memory budget (--max-buffer-memory).\n# TYPE roughy_buffer_bytes_budget gauge\nroughy_buffer_bytes_budget %d\n", s.cfg.Buffers.Budget())
	}

	m.mu.Lock()
	keys := slices.SortedFunc(maps.Keys(m.requests), func(a, b requestKey) int {
		return cmp.Or(strings.Compare(a.route, b.route), strings.Compare(a.method, b.method), cmp.Compare(a.status, b.status))
	})
	b.WriteString("# HELP roughy_http_requests_total HTTP requests by route, method and status.\n# TYPE roughy_http_requests_total counter\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "roughy_http_requests_total{route=%q,method=%q,status=\"%d\"} %d\n", k.route, k.method, k.status, m.requests[k])
	}
	b.WriteString("# HELP roughy_http_request_duration_seconds HTTP request duration by route.\n# TYPE roughy_http_request_duration_seconds histogram\n")
	for _, route := range slices.Sorted(maps.Keys(m.latency)) {
		h := m.latency[route]
		var cum uint64
		for i, le := range latencyBuckets {
			cum += h.counts[i]
			fmt.Fprintf(&b, "roughy_http_request_duration_seconds_bucket{route=%q,le=\"%s\"} %d\n", route, strconv.FormatFloat(le, 'g', -1, 64), cum)
		}
		cum += h.counts[len(latencyBuckets)]
		fmt.Fprintf(&b, "roughy_http_request_duration_seconds_bucket{route=%q,le=\"+Inf\"} %d\n", route, cum)
		fmt.Fprintf(&b, "roughy_http_request_duration_seconds_sum{route=%q} %g\n", route, h.sum)
		fmt.Fprintf(&b, "roughy_http_request_duration_seconds_count{route=%q} %d\n", route, h.n)
	}
	m.mu.Unlock()

	ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
	ctx.SetBody(b.Bytes())
}
