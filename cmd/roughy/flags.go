package main

import (
	"github.com/roughy/ingest/internal/bytesize"

	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
)

// envPrefix starts every flag's environment twin: --max-buffer-memory is
// ROUGHY_MAX_BUFFER_MEMORY.
const envPrefix = "ROUGHY_"

// envName returns the environment twin of a flag name.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags fills fs's flags from their environment twins (looked up with
// lookup, os.LookupEnv in production), then parses args over them, so a
// flag on the command line wins over its twin, which wins over the default.
func parseFlags(fs *flag.FlagSet, args []string, lookup func(string) (string, bool)) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil {
			return
		}
		name := envName(f.Name)
		v, ok := lookup(name)
		if !ok {
			return
		}
		if e := f.Value.Set(v); e != nil {
			err = fmt.Errorf("roughy: %s=%q: %w", name, v, e)
		}
	})
	if err != nil {
		return err
	}
	return fs.Parse(args)
}

// flagSetMade, when set, is told of each subcommand's FlagSet as it is
// made: docs/configuration.md is rendered from them (configdoc_test.go).
var flagSetMade func(*flag.FlagSet)

// newFlagSet returns a FlagSet for a subcommand whose usage lists every
// flag with its environment twin.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	if flagSetMade != nil {
		flagSetMade(fs)
	}
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: roughy %s\n\nflags (each has an environment twin):\n", synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(stderr, "  --%s  [%s]%s\n      %s\n", f.Name, envName(f.Name), def, f.Usage)
		})
	}
	return fs
}

// byteSize is a flag.Value for sizes: a plain byte count or a number with
// a unit, binary (KiB, MiB, GiB, TiB, and the single letters K, M, G, T) or
// decimal (KB, MB, GB, TB). Case does not matter; "1.5GiB" is allowed.
type byteSize int64

func (b *byteSize) String() string { return bytesize.Format(int64(*b)) }

// Set implements flag.Value.
func (b *byteSize) Set(s string) error {
	n, err := bytesize.Parse(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

// sizeFlag defines a size flag.
func sizeFlag(fs *flag.FlagSet, name string, def int64, usage string) *int64 {
	v := new(int64)
	*v = def
	fs.Var((*byteSize)(v), name, usage)
	return v
}

// sizeVar binds a size flag to p; its default is p's value.
func sizeVar(fs *flag.FlagSet, p *int64, name, usage string) {
	fs.Var((*byteSize)(p), name, usage)
}

// listFlag is a comma list flag bound to a []string, blanks dropped.
type listFlag struct{ p *[]string }

func (l listFlag) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

// Set implements flag.Value.
func (l listFlag) Set(s string) error {
	*l.p = splitList(s)
	return nil
}

// prefixesFlag is a comma list of IP addresses and CIDR prefixes bound to
// a []netip.Prefix, checked when set.
type prefixesFlag struct {
	p     *[]netip.Prefix
	parse func(string) ([]netip.Prefix, error)
}

func (f prefixesFlag) String() string {
	if f.p == nil {
		return ""
	}
	out := make([]string, len(*f.p))
	for i, p := range *f.p {
		out[i] = p.String()
	}
	return strings.Join(out, ",")
}

// Set implements flag.Value.
func (f prefixesFlag) Set(s string) error {
	p, err := f.parse(s)
	if err != nil {
		return err
	}
	*f.p = p
	return nil
}

// oneOf is a string flag restricted to a set of values.
type oneOf struct {
	v       *string
	allowed []string
}

func (o oneOf) String() string {
	if o.v == nil {
		return ""
	}
	return *o.v
}

// Set implements flag.Value.
func (o oneOf) Set(s string) error {
	for _, a := range o.allowed {
		if s == a {
			*o.v = s
			return nil
		}
	}
	return fmt.Errorf("must be one of %s", strings.Join(o.allowed, ", "))
}

func choiceFlag(fs *flag.FlagSet, name, def, usage string, allowed ...string) *string {
	v := new(string)
	*v = def
	choiceVar(fs, v, name, usage, allowed...)
	return v
}

// choiceVar binds a string flag restricted to allowed to p; its default
// is p's value.
func choiceVar(fs *flag.FlagSet, p *string, name, usage string, allowed ...string) {
	shown := slices.DeleteFunc(slices.Clone(allowed), func(a string) bool { return a == "" })
	fs.Var(oneOf{p, allowed}, name, usage+" ("+strings.Join(shown, "|")+")")
}

// logLevel is a flag.Value for slog levels (debug, info, warn, error).
type logLevel struct{ l *slog.LevelVar }

func (l logLevel) String() string {
	if l.l == nil {
		return "info"
	}
	return strings.ToLower(l.l.Level().String())
}

// Set implements flag.Value.
func (l logLevel) Set(s string) error { return l.l.UnmarshalText([]byte(s)) }

// newLogger returns a text logger to stderr whose level a --log-level flag
// on fs sets.
func newLogger(fs *flag.FlagSet, stderr io.Writer) *slog.Logger {
	lv := new(slog.LevelVar)
	fs.Var(logLevel{lv}, "log-level", "log level: debug, info, warn, error")
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
}

// splitList splits a comma list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseAPIKeys parses "account=key,account2=key2".
func parseAPIKeys(s string) ([][2]string, error) {
	var out [][2]string
	for _, p := range splitList(s) {
		acct, key, ok := strings.Cut(p, "=")
		acct, key = strings.TrimSpace(acct), strings.TrimSpace(key)
		if !ok || acct == "" || key == "" {
			return nil, fmt.Errorf("roughy: --api-keys: %q is not account=key", redactPair(p))
		}
		out = append(out, [2]string{acct, key})
	}
	return out, nil
}

// redactPair keeps a malformed entry's secret out of error messages.
func redactPair(p string) string {
	if len(p) > 8 {
		return p[:8] + "…"
	}
	return p
}

// parseArgs is parseFlags that also accepts flags after positional
// arguments ("keys revoke ID --data-dir d", "upload FILE --key k"); it
// returns the positional arguments.
func parseArgs(fs *flag.FlagSet, args []string, lookup func(string) (string, bool)) ([]string, error) {
	if err := parseFlags(fs, args, lookup); err != nil {
		return nil, err
	}
	var pos []string
	for fs.NArg() > 0 {
		rest := fs.Args()
		if rest[0] == "--" {
			pos = append(pos, rest[1:]...)
			break
		}
		pos = append(pos, rest[0])
		if err := fs.Parse(rest[1:]); err != nil {
			return nil, err
		}
	}
	return pos, nil
}
