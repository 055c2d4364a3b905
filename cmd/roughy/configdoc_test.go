package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var updateConfigDoc = flag.Bool("update-config-doc", false, "rewrite docs/configuration.md from the flags")

// configDocPath is docs/configuration.md, from this package's directory.
var configDocPath = filepath.Join("..", "..", "docs", "configuration.md")

// docCommands are the commands docs/configuration.md describes, in order.
var docCommands = [][]string{
	{"serve"}, {"probe-worker"},
	{"keys", "create"}, {"keys", "list"}, {"keys", "revoke"},
	{"quota", "set"}, {"quota", "show"}, {"quota", "clear"},
	{"upload"}, {"version"},
}

// serveOnly are serve's flags that configure serve itself rather than a
// package's Config.
var serveOnly = []string{
	"api-keys", "data-dir", "janitor-interval", "listen", "log-level", "max-buffer-memory", "metrics-listen",
	"otlp-endpoint", "probe-workers", "redis-url", "sessions", "shutdown-timeout", "signing-key", "storage",
	"tls-cert", "tls-key",
}

// TestConfigurationDoc fails when docs/configuration.md is not what the
// flags render; -update-config-doc (go generate ./cmd/roughy) rewrites it.
func TestConfigurationDoc(t *testing.T) {
	got := renderConfigDoc(t)
	if *updateConfigDoc {
		if err := os.WriteFile(configDocPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	const regen = "regenerate it with `go generate ./cmd/roughy` (runs go test ./cmd/roughy -run '^TestConfigurationDoc$' -update-config-doc)"
	want, err := os.ReadFile(configDocPath)
	if err != nil {
		t.Fatalf("docs/configuration.md: %v; %s", err, regen)
	}
	if !bytes.Equal(got, want) {
		g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		i := 0
		for i < min(len(g), len(w)) && g[i] == w[i] {
			i++
		}
		line := func(l []string) string {
			if i < len(l) {
				return l[i]
			}
			return "(end of file)"
		}
		t.Fatalf("docs/configuration.md is stale: line %d is %q, the flags render %q; %s", i+1, line(w), line(g), regen)
	}
}

// TestServeFlagsBindConfig checks that every serve flag but serve's own
// is bound to a field of a package's Config, and that parsing a flag or
// its twin sets that field, 0 included.
func TestServeFlagsBindConfig(t *testing.T) {
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	f := addServeFlags(fl)
	fields := serveFields(fl, f)
	fl.VisitAll(func(fg *flag.Flag) {
		if _, ok := fields[fg.Name]; !ok && !slices.Contains(serveOnly, fg.Name) {
			t.Errorf("--%s sets no Config field", fg.Name)
		}
	})
	err := parseFlags(fl, []string{"--lease-ttl", "0", "--download-stall-timeout=0", "--max-patches-per-account", "0",
		"--webhook-workers", "0", "--s3-part-concurrency", "9", "--probe-timeout", "3s", "--quota-uploads", "7"},
		envMap(map[string]string{"ROUGHY_KEY_CACHE_TTL": "0", "ROUGHY_MIN_BODY_RATE": "0", "ROUGHY_REDIS_WAIT_REPLICAS": "2",
			"ROUGHY_CORS_ORIGINS": "https://a.example, https://b.example", "ROUGHY_TRUSTED_PROXIES": "10.0.0.0/8"}))
	if err != nil {
		t.Fatal(err)
	}
	p := f.proxy
	if p.LeaseTTL != 0 || p.DownloadStallTimeout != 0 || p.MaxAccountBodies != 0 || p.KeyCacheTTL != 0 || p.MinBodyRate != 0 ||
		f.webhook.cfg.Workers != 0 || f.sink.s3.PartConcurrency != 9 || f.probe.cfg.Runner.Timeout != 3e9 ||
		p.QuotaDefaults.Uploads != 7 || f.store.redis.WaitReplicas != 2 ||
		!slices.Equal(p.CORSOrigins, []string{"https://a.example", "https://b.example"}) ||
		len(p.TrustedProxies) != 1 || p.TrustedProxies[0].String() != "10.0.0.0/8" {
		t.Fatalf("got proxy %+v, webhook workers %d, s3 %+v, probe %+v, redis %+v",
			p, f.webhook.cfg.Workers, f.sink.s3, f.probe.cfg, f.store.redis)
	}
}

// serveFields maps each flag of fl (serve's, bound to f) that sets a
// package's Config field to that field's name ("proxy.Config.LeaseTTL"),
// found by the address the flag writes to.
func serveFields(fl *flag.FlagSet, f *serveFlags) map[string]string {
	byAddr := map[uintptr]string{}
	for _, root := range []struct {
		name string
		v    any
	}{
		{"proxy.Config", &f.proxy}, {"webhook.Config", &f.webhook.cfg}, {"probe.Config", &f.probe.cfg},
		{"pipeline.S3Config", &f.sink.s3}, {"redis.Options", &f.store.redis},
	} {
		fieldAddrs(root.name, reflect.ValueOf(root.v).Elem(), byAddr)
	}
	out := map[string]string{}
	fl.VisitAll(func(fg *flag.Flag) {
		if name, ok := byAddr[flagTarget(fg.Value)]; ok {
			out[fg.Name] = name
		}
	})
	return out
}

// fieldAddrs records the address of every field of struct v, nested
// structs by their fields.
func fieldAddrs(prefix string, v reflect.Value, out map[uintptr]string) {
	for i := range v.NumField() {
		fv, name := v.Field(i), prefix+"."+v.Type().Field(i).Name
		if fv.Kind() == reflect.Struct {
			fieldAddrs(name, fv, out)
			continue
		}
		out[fv.UnsafeAddr()] = name
	}
}

// flagTarget is the address a flag.Value writes to: the pointer itself
// (the flag package's values, byteSize, count) or a struct's first
// pointer field (oneOf, listFlag, prefixesFlag).
func flagTarget(v flag.Value) uintptr {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer:
		return rv.Pointer()
	case reflect.Struct:
		for i := range rv.NumField() {
			if rv.Field(i).Kind() == reflect.Pointer {
				return rv.Field(i).Pointer()
			}
		}
	}
	return 0
}

// commandFlags runs `roughy CMD -h` and returns the FlagSet it made.
func commandFlags(t *testing.T, args []string) *flag.FlagSet {
	t.Helper()
	var made *flag.FlagSet
	flagSetMade = func(fs *flag.FlagSet) { made = fs }
	defer func() { flagSetMade = nil }()
	c := cli{stdout: io.Discard, stderr: io.Discard, lookup: envMap(nil)}
	if code := c.run(context.Background(), append(slices.Clone(args), "-h")); code != 0 || made == nil {
		t.Fatalf("roughy %s -h: exit %d, flag set %v", strings.Join(args, " "), code, made)
	}
	return made
}

// renderConfigDoc renders docs/configuration.md.
func renderConfigDoc(t *testing.T) []byte {
	var b bytes.Buffer
	b.WriteString(configDocIntro)
	fl := flag.NewFlagSet("serve", flag.ContinueOnError)
	fields := serveFields(fl, addServeFlags(fl))
	serve := map[string]*flag.Flag{}
	for _, args := range docCommands {
		fs := commandFlags(t, args)
		fmt.Fprintf(&b, "\n## roughy %s\n\n", strings.Join(args, " "))
		var own, shared []*flag.Flag
		fs.VisitAll(func(f *flag.Flag) {
			if s, ok := serve[f.Name]; ok && s.Usage == f.Usage && s.DefValue == f.DefValue {
				shared = append(shared, f)
			} else {
				own = append(own, f)
			}
		})
		if args[0] == "serve" {
			b.WriteString("| Flag | Environment | Default | Sets | Meaning |\n|---|---|---|---|---|\n")
			for _, f := range own {
				serve[f.Name] = f
				set := "serve"
				if name, ok := fields[f.Name]; ok {
					set = "`" + name + "`"
				}
				fmt.Fprintf(&b, "| `--%s` | `%s` | %s | %s | %s |\n", f.Name, envName(f.Name), docDefault(f), set, docText(f.Usage))
			}
			continue
		}
		if len(own) > 0 {
			b.WriteString("| Flag | Environment | Default | Meaning |\n|---|---|---|---|\n")
			for _, f := range own {
				fmt.Fprintf(&b, "| `--%s` | `%s` | %s | %s |\n", f.Name, envName(f.Name), docDefault(f), docText(f.Usage))
			}
		}
		if len(shared) > 0 {
			if len(own) > 0 {
				b.WriteString("\n")
			}
			names := make([]string, len(shared))
			for i, f := range shared {
				names[i] = "`--" + f.Name + "`"
			}
			fmt.Fprintf(&b, "Also %s, as for serve.\n", strings.Join(names, ", "))
		}
		if len(own)+len(shared) == 0 {
			b.WriteString("No flags.\n")
		}
	}
	return b.Bytes()
}

func docDefault(f *flag.Flag) string {
	if f.DefValue == "" {
		return "(none)"
	}
	return "`" + f.DefValue + "`"
}

// docText makes a flag's help safe in a Markdown table cell.
func docText(s string) string {
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;").Replace(s)
}

const configDocIntro = `# Configuration

<!-- Generated from the flags by ` + "`go generate ./cmd/roughy`" + `; do not edit by hand. -->

Every setting of ` + "`roughy`" + ` is a flag of its command, and every flag has an
environment twin: ` + "`ROUGHY_`" + ` and the flag's name in upper case with ` + "`-`" + `
turned into ` + "`_`" + ` (` + "`--max-buffer-memory`" + ` is ` + "`ROUGHY_MAX_BUFFER_MEMORY`" + `). A flag
on the command line wins over its twin, which wins over the default.
` + "`roughy <command> -h`" + ` prints the same list.

Values: sizes are a byte count or a number with a unit, binary (` + "`KiB`" + `,
` + "`MiB`" + `, ` + "`GiB`" + `, ` + "`TiB`" + `, or ` + "`K`" + `, ` + "`M`" + `, ` + "`G`" + `, ` + "`T`" + `) or decimal (` + "`KB`" + `, ` + "`MB`" + `,
` + "`GB`" + `, ` + "`TB`" + `), any case, ` + "`1.5GiB`" + ` allowed; durations are Go durations
(` + "`90s`" + `, ` + "`10m`" + `, ` + "`1h30m`" + `); booleans are ` + "`true`" + `/` + "`false`" + ` (` + "`--flag`" + ` alone is
` + "`true`" + `).

**Off is 0.** A setting that can be turned off is turned off with ` + "`0`" + `,
and its help says what that means (` + "`0: no cap`" + `, ` + "`0: never`" + `, ` + "`0: none`" + `).
A setting that cannot be off (a lease, an expiry, a timeout, a retry
delay) takes its default when given ` + "`0`" + `. Where 0 means something else,
the help says so: ` + "`--max-conns`" + `, ` + "`--max-conns-per-ip`" + ` and
` + "`--webhook-reclaim-after`" + ` are then derived from another setting;
` + "`--s3-stall-timeout`" + ` is never enforced when negative.

**One place.** Each package exports its ` + "`Config`" + ` and a ` + "`DefaultConfig()`" + `
(` + "`proxy.DefaultConfig`" + `, ` + "`webhook.DefaultConfig`" + `, ` + "`probe.DefaultConfig`" + `,
` + "`pipeline.DefaultS3Config`" + `, ` + "`redis.DefaultOptions`" + `); the flags
are bound straight onto those fields, with those values as defaults. The
*Sets* column names the field; *serve* marks a setting of the command
itself. The same holds in Go: a ` + "`Config`" + ` field that can be off is off at 0,
one that cannot takes its ` + "`DefaultConfig`" + ` value at 0.
`
