package main

import (
	"github.com/roughy/ingest/internal/bytesize"

	"bytes"
	"context"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestEnvName(t *testing.T) {
	for _, tc := range []struct{ flag, want string }{
		{"listen", "ROUGHY_LISTEN"},
		{"max-buffer-memory", "ROUGHY_MAX_BUFFER_MEMORY"},
		{"s3-force-path-style", "ROUGHY_S3_FORCE_PATH_STYLE"},
		{"api-keys", "ROUGHY_API_KEYS"},
		{"key", "ROUGHY_KEY"},
	} {
		if got := envName(tc.flag); got != tc.want {
			t.Errorf("envName(%q) = %q, want %q", tc.flag, got, tc.want)
		}
	}
}

// TestEnvTwins checks precedence (flag > env > default) and parsing of
// every kind of flag through its twin.
func TestEnvTwins(t *testing.T) {
	type got struct {
		listen  string
		mem     int64
		expiry  time.Duration
		path    bool
		workers int
		storage string
	}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		want    got
		wantErr string
	}{
		{name: "defaults", want: got{":8080", 1 << 30, 24 * time.Hour, false, 2, "local"}},
		{
			name: "env",
			env: map[string]string{"ROUGHY_LISTEN": "127.0.0.1:9000", "ROUGHY_MAX_BUFFER_MEMORY": "512MiB",
				"ROUGHY_UPLOAD_EXPIRY": "90m", "ROUGHY_S3_FORCE_PATH_STYLE": "true",
				"ROUGHY_PROBE_WORKERS": "0", "ROUGHY_STORAGE": "s3"},
			want: got{"127.0.0.1:9000", 512 << 20, 90 * time.Minute, true, 0, "s3"},
		},
		{
			name: "flag wins over env",
			env:  map[string]string{"ROUGHY_LISTEN": "127.0.0.1:9000", "ROUGHY_MAX_BUFFER_MEMORY": "512MiB"},
			args: []string{"--listen", ":7000", "--max-buffer-memory=2GiB"},
			want: got{":7000", 2 << 30, 24 * time.Hour, false, 2, "local"},
		},
		{
			name: "bool flag false over env true",
			env:  map[string]string{"ROUGHY_S3_FORCE_PATH_STYLE": "1"},
			args: []string{"--s3-force-path-style=false"},
			want: got{":8080", 1 << 30, 24 * time.Hour, false, 2, "local"},
		},
		{name: "bad size in env", env: map[string]string{"ROUGHY_MAX_BUFFER_MEMORY": "lots"}, wantErr: "ROUGHY_MAX_BUFFER_MEMORY"},
		{name: "bad choice in env", env: map[string]string{"ROUGHY_STORAGE": "tape"}, wantErr: "ROUGHY_STORAGE"},
		{name: "bad duration in env", env: map[string]string{"ROUGHY_UPLOAD_EXPIRY": "soon"}, wantErr: "ROUGHY_UPLOAD_EXPIRY"},
		{name: "unrelated env ignored", env: map[string]string{"ROUGHY_NOPE": "x", "LISTEN": "y"},
			want: got{":8080", 1 << 30, 24 * time.Hour, false, 2, "local"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			listen := fs.String("listen", ":8080", "")
			sf := addStoreFlags(fs)
			kf := addSinkFlags(fs, sf.dataDir)
			pf := addProbeFlags(fs, 2)
			expiry := fs.Duration("upload-expiry", 24*time.Hour, "")
			err := parseFlags(fs, tc.args, envMap(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			g := got{*listen, *kf.maxBufferMemory, *expiry, kf.s3.ForcePathStyle, pf.workers, *kf.storage}
			if g != tc.want {
				t.Fatalf("got %+v, want %+v", g, tc.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "1GiB", want: 1 << 30},
		{in: "512MiB", want: 512 << 20},
		{in: "512mib", want: 512 << 20},
		{in: "50MiB", want: 50 << 20},
		{in: "64KiB", want: 64 << 10},
		{in: "2TiB", want: 2 << 40},
		{in: "1G", want: 1 << 30},
		{in: "16M", want: 16 << 20},
		{in: "1.5GiB", want: 3 << 29},
		{in: "1GB", want: 1e9},
		{in: "5MB", want: 5e6},
		{in: "1048576", want: 1 << 20},
		{in: "100B", want: 100},
		{in: " 8 MiB ", want: 8 << 20},
		{in: "0", want: 0},
		{in: "", bad: true},
		{in: "GiB", bad: true},
		{in: "-1MiB", bad: true},
		{in: "12XB", bad: true},
		{in: "1..5MiB", bad: true},
		{in: "99999999999TiB", bad: true},
	} {
		got, err := bytesize.Parse(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parseSize(%q) = %d, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v, want %d", tc.in, got, err, tc.want)
		}
	}
	for _, n := range []int64{1 << 30, 512 << 20, 50 << 20, 1000} {
		s := bytesize.Format(n)
		if back, err := bytesize.Parse(s); err != nil || back != n {
			t.Errorf("formatSize(%d) = %q parses back as %d, %v", n, s, back, err)
		}
	}
}

func TestParseArgsInterspersed(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	key := fs.String("key", "", "")
	chunk := sizeFlag(fs, "chunk-size", 50<<20, "")
	pos, err := parseArgs(fs, []string{"movie.mp4", "--key", "k1", "--chunk-size", "8MiB"}, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pos, []string{"movie.mp4"}) || *key != "k1" || *chunk != 8<<20 {
		t.Fatalf("got pos %v key %q chunk %d", pos, *key, *chunk)
	}
}

func TestParseAPIKeys(t *testing.T) {
	got, err := parseAPIKeys(" acme=rk_live_a, globex=rk_live_b ,")
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"acme", "rk_live_a"}, {"globex", "rk_live_b"}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"acme", "=rk_live_x", "acme=", "acme:rk_live_secretvalue"} {
		_, err := parseAPIKeys(bad)
		if err == nil {
			t.Errorf("parseAPIKeys(%q): no error", bad)
		} else if strings.Contains(err.Error(), "secretvalue") {
			t.Errorf("error %q leaks the secret", err)
		}
	}
}

func TestRunUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"frobnicate"}, 2},
		{[]string{"serve", "--storage", "tape"}, 2},
		{[]string{"serve", "--trusted-proxies", "10.0.0.0/33"}, 2},
		{[]string{"serve", "--trusted-proxies", "lb.internal"}, 2},
		{[]string{"serve", "--max-conns", "-1"}, 2},
		{[]string{"serve", "--max-conns-per-ip", "-1"}, 2},
		{[]string{"keys"}, 2},
		{[]string{"keys", "create"}, 2},
		{[]string{"keys", "revoke"}, 2},
		{[]string{"upload"}, 2},
		{[]string{"upload", "f", "--chunk-size", "65MiB", "--key", "k"}, 2},
		{[]string{"serve", "-h"}, 0},
	} {
		var out, errb bytes.Buffer
		c := cli{stdout: &out, stderr: &errb, lookup: envMap(nil)}
		if got := c.run(context.Background(), tc.args); got != tc.code {
			t.Errorf("roughy %v: exit %d, want %d (stderr %q)", tc.args, got, tc.code, errb.String())
		}
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	c := cli{stdout: &out, stderr: io.Discard, lookup: envMap(nil)}
	if code := c.run(context.Background(), []string{"version"}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"roughy dev", "go:  go1.", "cpu: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("version output %q lacks %q", out.String(), want)
		}
	}
}
