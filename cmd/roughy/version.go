package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/roughy/ingest/pipeline"
)

// version is set at build time:
//
//	go build -ldflags "-X main.version=v1.2.3" ./cmd/roughy
var version = "dev"

// version prints the version, Go and VCS build information, and the CPU
// features the hashing code uses.
func (c cli) version(args []string) error {
	fl := newFlagSet("version", "version", c.stderr)
	if _, err := parseArgs(fl, args, c.lookup); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	fmt.Fprintf(c.stdout, "roughy %s\n", version)
	fmt.Fprintf(c.stdout, "go:  %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			fmt.Fprintf(c.stdout, "module: %s %s\n", bi.Main.Path, bi.Main.Version)
		}
		var rev, at, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			dirty := ""
			if modified == "true" {
				dirty = " (modified)"
			}
			fmt.Fprintf(c.stdout, "vcs: %s %s%s\n", rev, at, dirty)
		}
	}
	fmt.Fprintf(c.stdout, "cpu: %s\n", pipeline.CPUFeatures())
	return nil
}
