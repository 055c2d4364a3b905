package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/roughy/ingest/bench/internal/benchproc"
)

// fleetScenario: does adding nodes scale? One roughy node vs fleetNodes nodes, all on
// Redis sessions and versitygw storage, fleetConc concurrent uploads whose
// requests rotate over the nodes.
func (b *bench) fleetScenario(ctx context.Context) (*report, error) {
	rep := &report{scenario: "fleet", title: fmt.Sprintf("Fleet: %d roughy nodes vs 1, --sessions redis --storage s3, %d concurrent uploads", b.o.fleetNodes, b.o.fleetConc)}
	if err := b.startRedis(ctx); err != nil {
		return rep, err
	}
	defer b.redis.Stop(10 * time.Second)
	if b.rproxy != nil {
		defer b.rproxy.close()
	}
	if err := b.startS3(ctx); err != nil {
		return rep, err
	}
	defer b.s3.stop()
	targets := b.targetsOr("roughy", "roughy-fleet")
	if err := b.checkTargets(ctx, rep, targets); err != nil {
		return rep, err
	}
	b.o.size = b.o.fleetSize
	b.alternate(ctx, rep, b.available(rep, targets), b.o.fleetConc, b.o.fleetSize)
	rep.extra = append(rep.extra, b.fleetExtra(rep)...)
	return rep, nil
}

// startRedis starts redis-server on a loopback port with AOF (everysec),
// the durable set-up the fleet mode is meant for.
func (b *bench) startRedis(_ context.Context) error {
	dir, err := b.runDir("redis")
	if err != nil {
		return err
	}
	port, err := benchproc.FreePort()
	if err != nil {
		return err
	}
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "no"}
	p, err := benchproc.Start("redis-server", b.o.redisBin, args, nil, filepath.Join(dir, "redis.log"))
	if err != nil {
		return err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := redisCmd(addr, "PING"); err == nil {
			break
		}
		if time.Now().After(deadline) || p.Exited() {
			p.Stop(time.Second)
			return fmt.Errorf("ingestbench: redis-server not ready on %s; see %s", addr, p.Log.Name())
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.redis, b.redisDirect = p, addr
	b.redisURL = "redis://" + addr + "/0"
	if b.o.redisProxy {
		px, err := startRedisProxy(addr)
		if err != nil {
			p.Stop(time.Second)
			return err
		}
		b.rproxy = px
		b.redisURL = "redis://" + px.addr() + "/0"
	}
	return nil
}

// redisAddr is redis-server itself: the harness's own commands (INFO,
// FLUSHALL) bypass the counting proxy.
func (b *bench) redisAddr() string { return b.redisDirect }

// redisCmd sends one inline command and returns the reply's text.
func redisCmd(addr string, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", fmt.Errorf("ingestbench: redis dial: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
		return "", fmt.Errorf("ingestbench: redis write: %w", err)
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("ingestbench: redis read: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "-"):
		return "", fmt.Errorf("ingestbench: redis %s: %s", cmd, line[1:])
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("ingestbench: redis bad bulk %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", fmt.Errorf("ingestbench: redis read bulk: %w", err)
		}
		return string(buf[:n]), nil
	default:
		return line[1:], nil
	}
}

// commandStats returns calls per command from INFO commandstats.
func commandStats(addr string) (map[string]int64, error) {
	txt, err := redisCmd(addr, "INFO commandstats")
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for line := range strings.SplitSeq(txt, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for kv := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				out[strings.TrimPrefix(name, "cmdstat_")] = n
			}
		}
	}
	return out, nil
}

// fleetStats are the fleet scenario's Redis command counts and the nodes'
// commit-latency histograms for one run.
type fleetStats struct {
	calls   map[string]int64     // per command, during the window, as redis-server counts them (Lua-internal calls included)
	client  map[string]*cmdStats // per command as the nodes sent them (proxy)
	trips   int64                // round trips (proxy)
	patches int
	commit  *histogram // summed over nodes; nil when no node exposes one
	metric  string
}

// fleetBefore / fleetAfter bracket a run (called from runTUS).
func (b *bench) fleetBefore() map[string]int64 {
	if b.redis == nil {
		return nil
	}
	if b.rproxy != nil {
		b.rproxy.snapshot()
	}
	st, _ := commandStats(b.redisAddr())
	return st
}

func (b *bench) fleetAfter(ctx context.Context, before map[string]int64, inst *instance, s *sample) {
	if b.redis == nil || before == nil {
		return
	}
	after, err := commandStats(b.redisAddr())
	if err != nil {
		s.notes = append(s.notes, err.Error())
		return
	}
	fs := &fleetStats{calls: map[string]int64{}, patches: len(s.patches)}
	if b.rproxy != nil {
		fs.client, fs.trips = b.rproxy.snapshot()
	}
	for k, v := range after {
		if d := v - before[k]; d > 0 && k != "info" {
			fs.calls[k] = d
		}
	}
	for _, ep := range inst.endpoints {
		h, name := scrapeCommit(ctx, strings.TrimSuffix(ep, "/api/v1/assets/upload-resumable")+"/metrics")
		if h == nil {
			continue
		}
		fs.metric = name
		if fs.commit == nil {
			fs.commit = h
		} else {
			fs.commit.add(h)
		}
	}
	s.fleet = fs
}

// histogram is a Prometheus histogram: cumulative counts per upper bound.
type histogram struct {
	bounds []float64
	counts []float64
}

func (h *histogram) add(o *histogram) {
	for i := range h.bounds {
		if i < len(o.counts) && o.bounds[i] == h.bounds[i] {
			h.counts[i] += o.counts[i]
		}
	}
}

// quantile interpolates linearly inside the bucket that holds q.
func (h *histogram) quantile(q float64) float64 {
	if len(h.counts) == 0 {
		return math.NaN()
	}
	total := h.counts[len(h.counts)-1]
	if total == 0 {
		return math.NaN()
	}
	rank := q * total
	prevB, prevC := 0.0, 0.0
	for i, c := range h.counts {
		if c >= rank {
			if math.IsInf(h.bounds[i], 1) {
				return prevB
			}
			if c == prevC {
				return h.bounds[i]
			}
			return prevB + (h.bounds[i]-prevB)*(rank-prevC)/(c-prevC)
		}
		prevB, prevC = h.bounds[i], c
	}
	return prevB
}

// scrapeCommit fetches /metrics and returns the first histogram whose name
// mentions "commit" (summing label sets), with its name.
func scrapeCommit(ctx context.Context, url string) (*histogram, string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return nil, ""
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, ""
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return parseCommit(string(body))
}

// parseCommit is scrapeCommit's reading of a Prometheus text exposition.
func parseCommit(body string) (*histogram, string) {
	byLE := map[float64]float64{}
	name := ""
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		metric, rest, ok := strings.Cut(line, "{")
		if !ok || !strings.HasSuffix(metric, "_bucket") || !strings.Contains(metric, "commit") {
			continue
		}
		if name == "" {
			name = strings.TrimSuffix(metric, "_bucket")
		} else if metric != name+"_bucket" {
			continue
		}
		labels, val, _ := strings.Cut(rest, "}")
		i := strings.Index(labels, `le="`)
		if i < 0 {
			continue
		}
		leS, _, _ := strings.Cut(labels[i+4:], `"`)
		le, err1 := strconv.ParseFloat(leS, 64)
		v, err2 := strconv.ParseFloat(strings.Fields(val)[0], 64)
		if err1 != nil || err2 != nil {
			continue
		}
		byLE[le] += v
	}
	if name == "" {
		return nil, ""
	}
	h := &histogram{}
	for le := range byLE {
		h.bounds = append(h.bounds, le)
	}
	slices.Sort(h.bounds)
	for _, le := range h.bounds {
		h.counts = append(h.counts, byLE[le])
	}
	return h, name
}

// fleetExtra renders the Redis and commit-latency figures per run.
func (b *bench) fleetExtra(rep *report) []string {
	out := []string{"### Redis per run\n",
		"| target | run | PATCHes | committed parts (Commit script calls) | commands sent by the nodes | round trips | per PATCH: commands / round trips | per committed part: commands / round trips | commands run by redis (Lua-internal included) | most sent | EVALSHA latency p50 / p99 by script | commit p50 / p99 (/metrics) |",
		"|---|---|---|---|---|---|---|---|---|---|---|---|"}
	for _, s := range rep.samples {
		if s.fleet == nil || s.err != nil {
			continue
		}
		fs := s.fleet
		var server int64
		for _, v := range fs.calls {
			server += v
		}
		var sent int64
		type kv struct {
			k string
			v *cmdStats
		}
		var cmds []kv
		for k, v := range fs.client {
			sent += v.calls
			cmds = append(cmds, kv{k, v})
		}
		slices.SortFunc(cmds, func(a, b kv) int { return int(b.v.calls - a.v.calls) })
		var tops, evals []string
		for _, c := range cmds {
			if len(tops) < 6 {
				tops = append(tops, fmt.Sprintf("%s %d", c.k, c.v.calls))
			}
			if strings.HasPrefix(c.k, "evalsha") {
				evals = append(evals, fmt.Sprintf("%s ×%d: %s / %s", c.k, c.v.calls, ms2(percentile(c.v.lat, 0.5)), ms2(percentile(c.v.lat, 0.99))))
			}
		}
		lat := "not exposed"
		if fs.commit != nil {
			lat = fmt.Sprintf("%.1f ms / %.1f ms (`%s`, bucket-interpolated)", fs.commit.quantile(0.5)*1000, fs.commit.quantile(0.99)*1000, fs.metric)
		}
		per := "–"
		if fs.patches > 0 {
			per = fmt.Sprintf("%.1f / %.1f", float64(sent)/float64(fs.patches), float64(fs.trips)/float64(fs.patches))
		}
		commits, perCommit := "–", "–"
		if c := fs.client["evalsha:Commit"]; c != nil && c.calls > 0 {
			commits = strconv.FormatInt(c.calls, 10)
			perCommit = fmt.Sprintf("%.2f / %.2f", float64(sent)/float64(c.calls), float64(fs.trips)/float64(c.calls))
		}
		proxied := "–"
		if b.rproxy != nil {
			proxied = strconv.FormatInt(sent, 10)
		}
		trips := "–"
		if b.rproxy != nil {
			trips = strconv.FormatInt(fs.trips, 10)
		}
		out = append(out, fmt.Sprintf("| %s | %d | %d | %s | %s | %s | %s | %s | %d | %s | %s | %s |", b.label(s.target), s.run, fs.patches, commits, proxied, trips, per, perCommit, server, strings.Join(tops, ", "), strings.Join(evals, "; "), lat))
	}
	out = append(out, "",
		"Counted on the wire by a RESP-parsing TCP proxy between the nodes and redis-server (`-redis-proxy`, on by default; it adds one loopback hop to every Redis command of both configurations). Everything the nodes sent during the window is included — POSTs, leases and their renewals, commits, completion, the probe queue — divided by the number of PATCHes and by the number of committed parts (calls of the store's `Commit` script: roughy may split a PATCH into several S3 parts). A round trip starts when a node sends a command on a connection with none outstanding; a pipeline or one EVALSHA is one round trip. EVALSHA latency is request-to-reply on the wire, per script (named after `sessionstore/redis/lua.go`, else the first 8 hex digits of its SHA); `evalsha:Commit` is the commit latency as Redis serves it.",
		"")
	return out
}

func ms2(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}
