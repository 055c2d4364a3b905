package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/roughy/ingest/bench/internal/benchproc"
	"github.com/roughy/ingest/tusclient"
)

// sample is the outcome of one run of one target.
type sample struct {
	target  string
	phase   string // "alt" (alternating single uploads) or "conc"
	run     int
	uploads int
	bytes   int64
	wall    time.Duration // first POST to last 204 (or CompleteMultipartUpload)
	cpu     time.Duration // server (proxy) CPU during the window, all nodes; -1 = none
	hwm     int64         // server peak RSS (max over nodes); -1 = none
	s3CPU   time.Duration // versitygw CPU during the window; -1 = not measured
	auxCPU  time.Duration // redis-server CPU during the window; -1 = not measured
	patches []time.Duration
	verify  string // what the post-run check found
	err     error
	notes   []string
	fleet   *fleetStats // fleet scenario only
	load1   string      // 1-minute load average when the run started
}

func (s sample) mibps() float64 {
	return float64(s.bytes) / (1 << 20) / s.wall.Seconds()
}

func perGiB(d time.Duration, bytes int64) float64 {
	if d < 0 {
		return -1
	}
	return d.Seconds() / (float64(bytes) / (1 << 30))
}

// instance is a started target: the processes under measurement and how
// to talk to them.
type instance struct {
	procs     []*benchproc.Server
	endpoints []string // creation URLs; upload i uses endpoints[i%len]
	rotate    bool     // fleet: PATCH j of upload i goes to node (i+j)%len
	header    http.Header
	meta      map[string]string
	verify    func(ctx context.Context, res []tusclient.Result, bases []int64, size int64) string
	stop      func()
	tls       *tls.Config // the client side of a TLS target (nil: plain HTTP)
}

// runTarget starts target name in a fresh dir, runs n concurrent uploads
// of size bytes, measures and stops it.
func (b *bench) runTarget(ctx context.Context, name, phase string, run, n int, size int64) sample {
	s := sample{target: name, phase: phase, run: run, uploads: n, bytes: int64(n) * size, cpu: -1, hwm: -1, s3CPU: -1, auxCPU: -1}
	s.load1 = benchproc.LoadAvg()
	slog.Info("run", "target", name, "phase", phase, "run", run, "uploads", n, "size", benchproc.FormatSize(size))
	dir, err := b.runDir(name)
	if err != nil {
		s.err = err
		return s
	}
	defer b.cleanup(dir)
	if b.s3 != nil {
		if err := b.s3.reset(ctx); err != nil {
			s.err = err
			return s
		}
	}
	if b.redis != nil {
		if _, err := redisCmd(b.redisAddr(), "FLUSHALL"); err != nil {
			s.err = err
			return s
		}
	}
	if name == "direct" {
		return b.runDirect(ctx, s, n, size)
	}
	inst, err := b.startTarget(ctx, name, dir)
	if err != nil {
		s.err = err
		return s
	}
	defer inst.stop()
	return b.runTUS(ctx, s, inst, n, size)
}

// startTarget starts the server of target name (any but direct) with its
// data in dir.
func (b *bench) startTarget(ctx context.Context, name, dir string) (*instance, error) {
	switch name {
	case "roughy":
		return b.startRoughy(ctx, dir, 1)
	case "roughy-before":
		return b.startRoughyBin(ctx, b.o.roughyBefore, dir, 1)
	case "roughy-tls":
		return b.startRoughy(ctx, dir, -1)
	case "roughy-fleet":
		return b.startRoughy(ctx, dir, b.o.fleetNodes)
	case "tusd":
		return b.startTusd(ctx, dir)
	}
	return nil, fmt.Errorf("ingestbench: unknown target %q", name)
}

// runTUS drives n concurrent uploads through inst and measures the window.
func (b *bench) runTUS(ctx context.Context, s sample, inst *instance, n int, size int64) sample {
	hc := tusclient.NewHTTPClient(0)
	if inst.tls != nil {
		hc.Transport.(*http.Transport).TLSClientConfig = inst.tls
	}
	defer hc.CloseIdleConnections()
	bases := make([]int64, n)
	for i := range n {
		bases[i] = b.src.sectionBase(i, size)
	}
	// Warm the page cache so that every target reads the source from RAM.
	if _, err := b.src.sha256Of(bases[0], size); err != nil {
		s.err = err
		return s
	}
	before, err := measure(inst.procs)
	if err != nil {
		s.err = err
		return s
	}
	s3Before, auxBefore := b.sideCPU()
	redisBefore := b.fleetBefore()
	results := make([]tusclient.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			c := inst.client(hc, i, b.o.chunk)
			results[i], errs[i] = c.Upload(ctx, b.src.f, bases[i], size)
		})
	}
	wg.Wait()
	s.wall = time.Since(start)
	if n == 1 && errs[0] == nil {
		s.wall = results[0].Elapsed
	}
	after, err := measure(inst.procs)
	if err != nil {
		s.err = err
		return s
	}
	s.cpu, s.hwm = after.CPU-before.CPU, after.HWM
	s.s3CPU, s.auxCPU = b.sideCPUSince(s3Before, auxBefore)
	for _, r := range results {
		s.patches = append(s.patches, r.Patches...)
	}
	b.fleetAfter(ctx, redisBefore, inst, &s)
	if err := errors.Join(errs...); err != nil {
		s.err = err
		return s
	}
	if b.o.verify && inst.verify != nil {
		s.verify = inst.verify(ctx, results, bases, size)
	} else {
		s.verify = "skipped"
	}
	return s
}

// client is the TUS client of upload i through inst: its endpoint and,
// when inst rotates, the other nodes in turn.
func (inst *instance) client(hc *http.Client, i int, chunk int64) tusclient.Client {
	c := tusclient.Client{
		HTTP:      hc,
		Endpoint:  inst.endpoints[i%len(inst.endpoints)],
		Header:    inst.header,
		Metadata:  tusclient.SortedMetadata(inst.meta),
		ChunkSize: chunk,
	}
	if inst.rotate && len(inst.endpoints) > 1 {
		for j := range inst.endpoints {
			c.Rotate = append(c.Rotate, hostOf(inst.endpoints[(i+1+j)%len(inst.endpoints)]))
		}
	}
	return c
}

// measure sums CPU and takes the max peak RSS over procs.
func measure(procs []*benchproc.Server) (benchproc.Stats, error) {
	var total benchproc.Stats
	for _, p := range procs {
		ps, err := benchproc.Read(p.PID())
		if err != nil {
			return total, fmt.Errorf("ingestbench: measure %s: %w (see %s)", p.Name, err, p.Log.Name())
		}
		total.CPU += ps.CPU
		total.ChildCPU += ps.ChildCPU
		total.HWM = max(total.HWM, ps.HWM)
	}
	return total, nil
}

// startRoughy starts nodes roughy servers sharing the scenario's storage;
// nodes -1 is one node serving HTTPS (--tls-cert) with a self-signed
// certificate made in dir.
func (b *bench) startRoughy(ctx context.Context, dir string, nodes int) (*instance, error) {
	bin, err := b.roughyBinary(ctx)
	if err != nil {
		return nil, err
	}
	return b.startRoughyBin(ctx, bin, dir, nodes)
}

// startRoughyBin is startRoughy with the binary bin.
func (b *bench) startRoughyBin(ctx context.Context, bin, dir string, nodes int) (*instance, error) {
	var tlsArgs []string
	var clientTLS *tls.Config
	if nodes < 0 {
		nodes = 1
		certFile, keyFile, tc, err := selfSignedCert(dir)
		if err != nil {
			return nil, err
		}
		tlsArgs, clientTLS = []string{"--tls-cert", certFile, "--tls-key", keyFile}, tc
	}
	inst := &instance{
		header: http.Header{"Authorization": {"Bearer " + b.o.apiKey}},
		meta:   map[string]string{"type": "video", "filename": "source.bin", "content_type": "application/octet-stream"},
		rotate: nodes > 1,
		tls:    clientTLS,
	}
	env := []string{"ROUGHY_API_KEYS=bench=" + b.o.apiKey}
	var common []string
	// The scenario started versitygw (s3, fleet, many on the fleet
	// stores) or Redis (fleet, many on the fleet stores).
	if b.s3 != nil {
		common = append(common, b.s3.roughyArgs()...)
		env = append(env, b.s3.awsEnv()...)
	}
	if b.redis != nil {
		common = append(common, "--sessions", "redis", "--redis-url", b.redisURL)
	}
	common = append(common, tlsArgs...)
	common = append(common, strings.Fields(b.o.roughyExtra)...)
	inst.stop = func() {
		for _, p := range inst.procs {
			p.Stop(15 * time.Second)
		}
	}
	for i := range nodes {
		port, err := benchproc.FreePort()
		if err != nil {
			inst.stop()
			return nil, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		dataDir := filepath.Join(dir, "data")
		if nodes > 1 {
			dataDir = filepath.Join(dir, fmt.Sprintf("data%d", i))
		}
		args := append([]string{"serve", "--listen", addr, "--data-dir", dataDir}, common...)
		p, err := b.start(fmt.Sprintf("roughy%d", i), bin, args, env, filepath.Join(dir, fmt.Sprintf("roughy%d.log", i)))
		if err != nil {
			inst.stop()
			return nil, err
		}
		inst.procs = append(inst.procs, p)
		ep := "http://" + addr + "/api/v1/assets/upload-resumable"
		wait := func() error {
			return p.WaitHTTP(ctx, http.MethodOptions, ep, 20*time.Second, http.StatusNoContent, http.StatusOK)
		}
		if clientTLS != nil {
			ep = "https://" + addr + "/api/v1/assets/upload-resumable"
			wait = func() error { return waitTLS(ctx, p, ep, clientTLS, 20*time.Second) }
		}
		if err := wait(); err != nil {
			inst.stop()
			return nil, err
		}
		inst.endpoints = append(inst.endpoints, ep)
	}
	inst.verify = func(ctx context.Context, res []tusclient.Result, bases []int64, size int64) string {
		return b.verifyRoughy(ctx, inst, res, bases, size)
	}
	return inst, nil
}

// verifyRoughy checks every asset: ready, right size, right SHA-256 (as
// the server computed it while streaming), its download equal to the
// source, and in S3 mode the bucket's objects.
func (b *bench) verifyRoughy(ctx context.Context, inst *instance, res []tusclient.Result, bases []int64, size int64) string {
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: inst.tls}}
	defer c.CloseIdleConnections()
	for i, r := range res {
		base := strings.TrimSuffix(inst.endpoints[i%len(inst.endpoints)], "/upload-resumable")
		if msg := b.verifyAsset(ctx, c, inst.header, base, r.CreateBody, bases[i], size); msg != "" {
			return msg
		}
	}
	msg := fmt.Sprintf("%d asset(s) ready, server sha256 = source sha256 = sha256 of the download", len(res))
	if b.s3 != nil {
		if v := b.s3.verifyObjects(ctx, len(res), size); v != "" {
			msg += "; " + v
		}
	}
	return msg
}

// startTusd starts tusd v2.9.1 on its file store (local) or S3 store.
func (b *bench) startTusd(ctx context.Context, dir string) (*instance, error) {
	port, err := benchproc.FreePort()
	if err != nil {
		return nil, err
	}
	uploadDir := filepath.Join(dir, "data")
	args := []string{"-host", "127.0.0.1", "-port", strconv.Itoa(port), "-base-path", "/files/"}
	var env []string
	if b.s3 != nil {
		args = append(args, b.s3.tusdArgs()...)
		env = b.s3.awsEnv()
	} else {
		args = append(args, "-upload-dir", uploadDir)
	}
	p, err := b.start("tusd", b.o.tusdBin, args, env, filepath.Join(dir, "tusd.log"))
	if err != nil {
		return nil, err
	}
	inst := &instance{procs: []*benchproc.Server{p}, stop: func() { p.Stop(15 * time.Second) }}
	ep := fmt.Sprintf("http://127.0.0.1:%d/files/", port)
	if err := p.WaitHTTP(ctx, http.MethodOptions, ep, 20*time.Second, http.StatusNoContent, http.StatusOK); err != nil {
		inst.stop()
		return nil, err
	}
	inst.endpoints = []string{ep}
	inst.meta = map[string]string{"filename": "source.bin"}
	inst.verify = func(ctx context.Context, res []tusclient.Result, bases []int64, size int64) string {
		if b.s3 != nil {
			return b.s3.verifyObjects(ctx, len(res), size)
		}
		for i, r := range res {
			f := filepath.Join(uploadDir, path.Base(r.Location))
			got, err := fileSHA256(f)
			if err != nil {
				return "FAILED: " + err.Error()
			}
			want, err := b.src.sha256Of(bases[i], size)
			if err != nil {
				return "FAILED: " + err.Error()
			}
			if got != want {
				return fmt.Sprintf("FAILED: %s sha256 %s, want %s", f, got, want)
			}
		}
		return fmt.Sprintf("%d file(s) sha256 = source sha256", len(res))
	}
	return inst, nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("ingestbench: open stored file: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("ingestbench: hash stored file: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hostOf(u string) string {
	rest := strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
	h, _, _ := strings.Cut(rest, "/")
	return h
}

func tusclientTrim(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// sideCPU reads the CPU time of the shared side servers (versitygw, redis).
func (b *bench) sideCPU() (s3, aux time.Duration) {
	s3, aux = -1, -1
	if b.s3 != nil && b.s3.proc != nil {
		if ps, err := benchproc.Read(b.s3.proc.PID()); err == nil {
			s3 = ps.CPU
		}
	}
	if b.redis != nil {
		if ps, err := benchproc.Read(b.redis.PID()); err == nil {
			aux = ps.CPU
		}
	}
	return s3, aux
}

func (b *bench) sideCPUSince(s3Before, auxBefore time.Duration) (s3, aux time.Duration) {
	s3, aux = b.sideCPU()
	if s3 >= 0 && s3Before >= 0 {
		s3 -= s3Before
	} else {
		s3 = -1
	}
	if aux >= 0 && auxBefore >= 0 {
		aux -= auxBefore
	} else {
		aux = -1
	}
	return s3, aux
}

// percentile returns the p-th percentile (0..1) of ds (nearest rank).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
