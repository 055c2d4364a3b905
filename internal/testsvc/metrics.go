package testsvc

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Metrics is one scrape of a /metrics page in the Prometheus text format:
// each series ("name{labels}" as printed) and its value.
type Metrics map[string]float64

// ScrapeMetrics fetches and parses url (a node's /metrics), failing t on
// any error.
func ScrapeMetrics(t testing.TB, url string) Metrics {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %d %v\n%s", url, resp.StatusCode, err, body)
	}
	m := Metrics{}
	for line := range strings.SplitSeq(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("scrape %s: bad line %q", url, line)
		}
		m[line[:i]] = v
	}
	return m
}

// Sum is the sum of the series of family name whose labels contain every
// one of labels (each `key="value"`); a histogram's name_count or
// name_sum, a counter's name. ok is false when no series matched.
func (m Metrics) Sum(name string, labels ...string) (sum float64, ok bool) {
	for series, v := range m {
		n, rest, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		match := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				match = false
			}
		}
		if match {
			sum, ok = sum+v, true
		}
	}
	return sum, ok
}

// CheckGrown fails t (without stopping it) for every family (a name
// then label filters, see Sum) that after lacks or that did not grow
// since m.
func (m Metrics) CheckGrown(t testing.TB, after Metrics, families [][]string) {
	t.Helper()
	for _, f := range families {
		a, ok := after.Sum(f[0], f[1:]...)
		if !ok {
			t.Errorf("/metrics has no %v", f)
			continue
		}
		if b, _ := m.Sum(f[0], f[1:]...); a <= b {
			t.Errorf("%v: got %v after, %v before; want it to grow", f, a, b)
		}
	}
}
