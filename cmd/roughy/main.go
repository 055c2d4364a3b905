// Command roughy is Roughy ingest's one binary: the TUS upload server
// (serve), the ffprobe consumer (probe-worker), API key management (keys),
// a first-party TUS client (upload) and build information (version).
//
// Every flag has an environment twin ROUGHY_<FLAG> (upper case, "-" → "_"):
// --max-buffer-memory is ROUGHY_MAX_BUFFER_MEMORY. A flag given on the
// command line wins over its twin.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// cli is what a subcommand gets from the process: its output streams and
// the environment (a function, so tests can supply their own).
type cli struct {
	stdout, stderr io.Writer
	lookup         func(string) (string, bool)
}

const usage = `usage: roughy <command> [flags]

commands:
  serve                       run the ingest server
  probe-worker                run only ffprobe workers (fleet mode)
  keys create --account NAME  create an API key (printed once)
  keys list                   list API keys
  keys revoke ID              revoke an API key
  upload FILE                 upload a file with the first-party TUS client
  version                     print version, build and CPU features

"roughy <command> -h" lists a command's flags and their ROUGHY_* twins.
`

func main() {
	c := cli{stdout: os.Stdout, stderr: os.Stderr, lookup: os.LookupEnv}
	os.Exit(c.run(context.Background(), os.Args[1:]))
}

// run executes one command and returns the process exit code.
func (c cli) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = c.serve(ctx, args[1:])
	case "probe-worker":
		err = c.probeWorker(ctx, args[1:])
	case "keys":
		err = c.keys(ctx, args[1:])
	case "upload":
		err = c.upload(ctx, args[1:])
	case "version", "--version", "-version":
		err = c.version(args[1:])
	case "help", "-h", "--help":
		fmt.Fprint(c.stdout, usage)
		return 0
	default:
		fmt.Fprintf(c.stderr, "roughy: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintln(c.stderr, err)
		return 2
	case errors.Is(err, errInterrupted):
		fmt.Fprintln(c.stderr, err)
		return 130
	default:
		fmt.Fprintln(c.stderr, err)
		return 1
	}
}

// errUsage wraps command-line mistakes (exit code 2).
var errUsage = errors.New("roughy: usage")

// errInterrupted: the user pressed Ctrl-C (exit code 130).
var errInterrupted = errors.New("roughy: interrupted")
