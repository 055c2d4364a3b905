package proxy

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// metrics are the node's Prometheus instruments, registered
// in a Telemetry's own registry. The field names are the ones the
// handlers used when /metrics was written by hand; the metric names
// stayed too (README, "Metrics").
type metrics struct {
	// The three atomics are read at scrape time (and by tests):
	// bytesReceived moves on every body read, where an atomic add is the
	// cheapest thing there is.
	bytesReceived atomic.Int64
	activeUploads atomic.Int64
	takeovers     atomic.Int64

	commits      prometheus.Counter
	created      prometheus.Counter
	completed    prometheus.Counter
	deleted      prometheus.Counter
	expired      prometheus.Counter
	failed       *prometheus.CounterVec // reason
	authFailures prometheus.Counter
	released     prometheus.Counter
	lost         prometheus.Counter
	slowBodies   prometheus.Counter
	stalledConns prometheus.Counter
	refusedConns *prometheus.CounterVec // code

	requests      *prometheus.CounterVec   // route, method, status
	latency       *prometheus.HistogramVec // route
	errors        *prometheus.CounterVec   // status, code
	patchSeconds  prometheus.Histogram
	patchBytes    prometheus.Histogram
	commitSeconds prometheus.Histogram

	s3Seconds    *prometheus.HistogramVec // operation
	s3Errors     *prometheus.CounterVec   // operation
	redisSeconds *prometheus.HistogramVec // script
	redisErrors  *prometheus.CounterVec   // script
	probeJobs    *prometheus.CounterVec   // outcome
}

// latencyBuckets are the upper bounds (seconds) of the request and PATCH
// duration histograms; PATCHes of 64 MiB take seconds, HEADs milliseconds.
var latencyBuckets = []float64{0.001, 0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60}

// s3Buckets: a 16 MiB part takes about 0.1 s on a fast link, a
// CompleteMultipartUpload of thousands of parts seconds.
var s3Buckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// storeBuckets: a commit or script is a Redis round trip (sub-millisecond
// on a LAN) or a bbolt fsync (milliseconds), 0.25 ms to 2 s.
var storeBuckets = prometheus.ExponentialBuckets(0.00025, 2, 14)

func newMetrics(reg prometheus.Registerer) *metrics {
	f := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	vec := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		reg.MustRegister(c)
		return c
	}
	hist := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
		reg.MustRegister(h)
		return h
	}
	m := &metrics{
		commits:   f("roughy_upload_commits_total", "Offset commits to the session store."),
		created:   f("roughy_uploads_created_total", "Uploads created."),
		completed: f("roughy_uploads_completed_total", "Uploads completed (asset ready)."),
		deleted:   f("roughy_uploads_deleted_total", "Uploads terminated by DELETE."),
		expired:   f("roughy_uploads_expired_total", "Abandoned uploads freed by the janitor."),
		failed: vec("roughy_uploads_failed_total",
			"Upload writes (PATCH, POST with data) that ended in an error, by reason; what was durable stays committed and the upload can resume.", "reason"),
		authFailures: f("roughy_auth_failures_total", "Requests with an unknown API key."),
		released:     f("roughy_leases_released_total", "Upload leases released by the request that held them."),
		lost:         f("roughy_leases_lost_total", "Upload leases lost while writing (expired or taken while the node could not renew them)."),
		slowBodies:   f("roughy_slow_bodies_total", "Upload bodies cut off below the minimum rate (--min-body-rate)."),
		stalledConns: f("roughy_stalled_writes_total",
			"Connections closed because a response write made no progress for --download-stall-timeout (a client that stopped reading)."),
		refusedConns: vec("roughy_connections_refused_total",
			"Connections answered 503 and closed by the listener (--max-conns, --max-conns-per-ip), by error code.", "code"),
		requests: vec("roughy_http_requests_total", "HTTP requests by route, method and status.", "route", "method", "status"),
		latency:  hist("roughy_http_request_duration_seconds", "HTTP request duration by route.", latencyBuckets, "route"),
		errors: vec("roughy_http_errors_total",
			"Error answers by status and error code (409 offset_mismatch or upload_taken_over, 423 upload_locked, 460 checksum_mismatch, 503 …).", "status", "code"),
		patchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "roughy_patch_duration_seconds",
			Help: "Duration of PATCHes that wrote a body, from the lease to the answer.", Buckets: latencyBuckets}),
		patchBytes: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "roughy_patch_bytes",
			Help: "Body bytes read per PATCH that wrote a body.", Buckets: prometheus.ExponentialBuckets(4<<10, 4, 8)}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "roughy_commit_duration_seconds",
			Help: "Latency of offset commits to the session store (compare-and-set fenced by the lease).", Buckets: storeBuckets}),
		s3Seconds: hist("roughy_s3_request_duration_seconds", "S3 requests by operation, the SDK's retries included.", s3Buckets, "operation"),
		s3Errors:  vec("roughy_s3_request_errors_total", "S3 requests that failed after the SDK's retries, by operation.", "operation"),
		redisSeconds: hist("roughy_redis_script_duration_seconds",
			"Redis Lua script runs by the store operation they serve.", storeBuckets, "script"),
		redisErrors: vec("roughy_redis_script_errors_total",
			"Redis script runs that failed (network, timeout, error reply), by store operation.", "script"),
		probeJobs: vec("roughy_probe_jobs_total", "Probe jobs settled by this node's workers: done, retry (scheduled again), dead (parked).", "outcome"),
	}
	reg.MustRegister(m.patchSeconds, m.patchBytes, m.commitSeconds,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "roughy_upload_bytes_received_total",
			Help: "Request body bytes read by upload requests."}, func() float64 { return float64(m.bytesReceived.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roughy_active_uploads",
			Help: "PATCH bodies being streamed now."}, func() float64 { return float64(m.activeUploads.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "roughy_leases_taken_over_total",
			Help: "Writes on this node that let go of their upload for a newer request."}, func() float64 { return float64(m.takeovers.Load()) }),
	)
	return m
}

// statusLabels are the status label values, made once: strconv.Itoa
// allocates for numbers above 99.
var statusLabels = func() (s [600]string) {
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return
}()

func statusLabel(code int) string {
	if code >= 0 && code < len(statusLabels) {
		return statusLabels[code]
	}
	return strconv.Itoa(code)
}

func (m *metrics) observe(route, method string, status int, d time.Duration) {
	switch method {
	case "GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "PUT":
	default:
		method = "other"
	}
	m.requests.WithLabelValues(route, method, statusLabel(status)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

// attach registers what /metrics reads from the server at scrape time:
// in-flight requests, the buffer budget, the probe queue, the queues'
// lengths. One server per Telemetry: a second attach would register the
// same names twice.
func (t *Telemetry) attach(s *Server) {
	reg := t.reg
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roughy_inflight_requests",
		Help: "Requests being served now."}, func() float64 { return float64(s.inflight.Load()) }))
	if b := s.cfg.Buffers; b != nil {
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roughy_buffer_bytes_in_use",
				Help: "Part buffer memory taken from the budget."}, func() float64 { return float64(b.InUse()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "roughy_buffer_bytes_budget",
				Help: "Part buffer memory budget (--max-buffer-memory)."}, func() float64 { return float64(b.Budget()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "roughy_buffer_waits_total",
				Help: "Buffer requests that waited for the budget to have room."}, func() float64 { n, _ := b.Waits(); return float64(n) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "roughy_buffer_wait_seconds_total",
				Help: "Time buffer requests spent waiting for the budget."}, func() float64 { _, d := b.Waits(); return d.Seconds() }),
		)
	}
	if q, ok := s.store.(probeQueue); ok {
		reg.MustRegister(probeQueueCollector{q: q})
	}
	if q, ok := s.store.(queueLengths); ok {
		reg.MustRegister(queueLengthCollector{q: q})
	}
}

// queueLengths is what /metrics reads of the lengths of the store's job
// queues (the bolt and redis stores have it).
type queueLengths interface {
	QueueLengths(ctx context.Context) (sessionstore.QueueLengths, error)
}

// queueLengthCollector asks the store for its queues' lengths at each
// scrape (fleet-wide in Redis). The queues are never trimmed, so this is
// the figure to alert on when their consumers fall behind.
type queueLengthCollector struct{ q queueLengths }

var queueLengthDesc = prometheus.NewDesc("roughy_queue_length",
	"Jobs of a store queue not settled yet: waiting, being worked on, or scheduled for a retry (fleet-wide).", []string{"queue"}, nil)

func (c queueLengthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- queueLengthDesc }

func (c queueLengthCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	q, err := c.q.QueueLengths(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(queueLengthDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(queueLengthDesc, prometheus.GaugeValue, float64(q.Probe), "probe")
	ch <- prometheus.MustNewConstMetric(queueLengthDesc, prometheus.GaugeValue, float64(q.Webhook), "webhook")
}

// probeQueue is what /metrics reads of the store's probe queue
// (the bolt and redis stores have it; a store without it shows none).
type probeQueue interface {
	ProbeQueueStats(ctx context.Context) (sessionstore.ProbeQueueStats, error)
}

// probeQueueCollector asks the store for the probe queue's state at each
// scrape: the queue is shared by the fleet, so every node shows the same
// figures.
type probeQueueCollector struct{ q probeQueue }

var (
	probeJobsDesc   = prometheus.NewDesc("roughy_probe_queue_jobs", "Probe jobs queued, claimed or waiting for a retry (fleet-wide).", nil, nil)
	probeOldestDesc = prometheus.NewDesc("roughy_probe_queue_oldest_seconds", "Age of the oldest probe job in the queue (0: none).", nil, nil)
	probeDeadDesc   = prometheus.NewDesc("roughy_probe_dead_letters", "Probe jobs parked as dead (fleet-wide).", nil, nil)
)

func (c probeQueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- probeJobsDesc
	ch <- probeOldestDesc
	ch <- probeDeadDesc
}

func (c probeQueueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.q.ProbeQueueStats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(probeJobsDesc, err)
		return
	}
	age := 0.0
	if !st.Oldest.IsZero() {
		age = max(time.Since(st.Oldest).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(probeJobsDesc, prometheus.GaugeValue, float64(st.Jobs))
	ch <- prometheus.MustNewConstMetric(probeOldestDesc, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(probeDeadDesc, prometheus.GaugeValue, float64(st.Dead))
}

// writeMetrics serves /metrics in the Prometheus text format.
func (s *Server) writeMetrics(ctx *fasthttp.RequestCtx, rq *request) {
	families, err := s.tel.reg.Gather()
	if err != nil && len(families) == 0 {
		s.writeError(ctx, rq, errors.Join(errUnavailable, err))
		return
	}
	// A collector that failed (the probe queue while the store is down)
	// is left out; the rest is still worth serving.
	var b bytes.Buffer
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	enc := expfmt.NewEncoder(&b, format)
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			s.writeError(ctx, rq, err)
			return
		}
	}
	ctx.SetContentType(string(format))
	ctx.SetBody(b.Bytes())
}

// newRegistry is a registry with the Go runtime and process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
