package main

import (
	"bufio"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseWorkloads(t *testing.T) {
	got, err := parseWorkloads("2000x256KiB@32, 400x4MiB@32,256×8MiB")
	if err != nil {
		t.Fatal(err)
	}
	want := []workload{{2000, 256 << 10, 32}, {400, 4 << 20, 32}, {256, 8 << 20, 256}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("workload %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	// More in flight than uploads: capped at the uploads.
	if got, _ := parseWorkloads("4x1KiB@32"); len(got) != 1 || got[0].conc != 4 {
		t.Errorf("4x1KiB@32: got %+v, want conc 4", got)
	}
	for _, bad := range []string{"", "256KiB@32", "0x1KiB", "10x@3", "10x1KiB@0", "10x1KiB@x"} {
		if _, err := parseWorkloads(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestPercentileNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.95, 95 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}} {
		if got := percentile(ds, c.p); got != c.want {
			t.Errorf("p%g: got %v, want %v", c.p*100, got, c.want)
		}
	}
	if got := percentile(nil, 0.99); got != 0 {
		t.Errorf("empty: got %v", got)
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("percentile sorted its input in place")
	}
}

func TestParseStraceSummary(t *testing.T) {
	table := `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 88.10    0.412000         206      2000           fdatasync
 11.90    0.055700          27      2040        12 fsync
------ ----------- ----------- --------- --------- ----------------
100.00    0.467700         231      4040        12 total
`
	got, err := parseStraceSummary(bufio.NewScanner(strings.NewReader(table)))
	if err != nil {
		t.Fatal(err)
	}
	if got["fdatasync"] != 2000 || got["fsync"] != 2040 || len(got) != 2 {
		t.Errorf("got %v, want fdatasync 2000, fsync 2040", got)
	}
	r := manyRun{w: workload{n: 1000}, syncs: got}
	if f := r.fsyncsPerUpload(); f != 4.04 {
		t.Errorf("fsyncs per upload: got %g, want 4.04", f)
	}
	// A server that never syncs leaves a table with no row.
	empty, err := parseStraceSummary(bufio.NewScanner(strings.NewReader("% time     seconds  usecs/call     calls    errors syscall\n------ -----------\n")))
	if err != nil || empty == nil || len(empty) != 0 {
		t.Errorf("empty table: got %v, %v; want an empty count", empty, err)
	}
	if f := (manyRun{w: workload{n: 10}, syncs: empty}).fsyncsPerUpload(); f != 0 {
		t.Errorf("no sync: got %g, want 0", f)
	}
	if f := (manyRun{w: workload{n: 10}}).fsyncsPerUpload(); f != -1 {
		t.Errorf("not counted: got %g, want -1", f)
	}
}

func TestManyReportTable(t *testing.T) {
	w := workload{n: 100, size: 256 << 10, conc: 32}
	lat := func(ms ...int) []time.Duration {
		var out []time.Duration
		for _, m := range ms {
			out = append(out, time.Duration(m)*time.Millisecond)
		}
		return out
	}
	r := &manyReport{runs: []manyRun{
		{target: "roughy", phase: "warm", w: w, wall: 100 * time.Second, cpu: time.Second, posts: lat(999)},
		{target: "roughy", phase: "alt", w: w, wall: time.Second, cpu: 300 * time.Millisecond, childCPU: 6 * time.Second, posts: lat(10, 20), patchs: lat(5), busy: 0.934, iowait: 0.051},
		{target: "tusd", phase: "alt", w: w, wall: 500 * time.Millisecond, cpu: 200 * time.Millisecond, posts: lat(2, 4), patchs: lat(1)},
		{target: "roughy", phase: "alt", w: w, wall: 2 * time.Second, cpu: 500 * time.Millisecond, childCPU: 10 * time.Second, posts: lat(30, 40), patchs: lat(6)},
		{target: "tusd", phase: "alt", w: w, wall: time.Second, verify: "FAILED: sha256", posts: lat(500)},
		{target: "roughy", phase: "strace", w: w, wall: 9 * time.Second, cpu: -1, busy: -1, iowait: -1, syncs: map[string]int64{"fdatasync": 200, "fsync": 50}},
		{target: "tusd", phase: "strace", w: w, wall: time.Second, cpu: -1, syncs: map[string]int64{}},
	}}
	got := r.table()
	for _, want := range []string{
		// roughy: median of 100 and 50 uploads/s; POSTs pooled over the
		// two alternating runs only (the warm-up's 999 ms left out);
		// CPU median of 3 and 5 ms, ffprobe's of 60 and 100 ms; 250 sync
		// calls / 100 uploads.
		"| 100 × 256KiB, 32 concurrent | roughy embedded default | 2/2 | 75.0 | 20 / 40 / 40 | 5.0 / 6.0 / 6.0 | 4.00 | 80.00 | 2.50 |",
		// tusd: the failed check is out of the medians, and a table with
		// no sync call is 0, not "not counted".
		"| 100 × 256KiB, 32 concurrent | tusd v2.9.1 file store | 1/2 | 200.0 | 2.0 / 4.0 / 4.0 | 1.0 / 1.0 / 1.0 | 2.00 | 0.00 | 0.00 |",
		"roughy/tusd uploads/s (medians): 100 × 256KiB, 32 concurrent: **0.38×**",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks\n%s\ngot:\n%s", want, got)
		}
	}
	if every := r.everyRun(); !strings.Contains(every, "fsync 50, fdatasync 200") || !strings.Contains(every, "| strace |") ||
		!strings.Contains(every, "| 3.00 + 60.0 |") || !strings.Contains(every, "| 93 / 5 |") {
		t.Errorf("every-run table lacks the strace run:\n%s", every)
	}
}

func TestManyReportFleetColumns(t *testing.T) {
	w := workload{n: 10, size: 256 << 10, conc: 32}
	r := &manyReport{fleet: true, runs: []manyRun{
		{target: "roughy", phase: "alt", w: w, wall: time.Second, cpu: -1, trips: 40, cmds: 60},
		{target: "tusd", phase: "alt", w: w, wall: time.Second, cpu: -1, trips: -1, cmds: -1},
	}}
	got := r.table()
	for _, want := range []string{
		"| 10 × 256KiB, 32 concurrent | roughy --sessions redis --storage s3 | 1/1 | 10.0 | – | – | – | – | – | 4.0 / 6.0 |",
		"| 10 × 256KiB, 32 concurrent | tusd v2.9.1 S3 store | 1/1 | 10.0 | – | – | – | – | – | – / – |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks\n%s\ngot:\n%s", want, got)
		}
	}
	if (&manyReport{runs: r.runs}).table() == got || strings.Contains((&manyReport{runs: r.runs}).table(), "Redis") {
		t.Error("the embedded table has Redis columns")
	}
}

func TestFirstError(t *testing.T) {
	if firstError(make([]error, 3)) != nil {
		t.Error("no failure: got an error")
	}
	a, b := errors.New("a"), errors.New("b")
	if got := firstError([]error{nil, a}); got != a {
		t.Errorf("one failure: got %v, want a", got)
	}
	if got := firstError([]error{nil, a, b}); got == nil || !errors.Is(got, a) || got.Error() != "2 uploads failed; the first: a" {
		t.Errorf("two failures: got %v", got)
	}
}
