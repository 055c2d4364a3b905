// Command roughy is Roughy ingest's one binary: the TUS upload server
// (serve), the ffprobe consumer (probe-worker), API key management (keys),
// a first-party TUS client (upload) and build information (version).
//
// Every flag has an environment twin ROUGHY_<FLAG> (upper case, "-" → "_"):
// --max-buffer-memory is ROUGHY_MAX_BUFFER_MEMORY. A flag given on the
// command line wins over its twin.
//
// Signing key (--signing-key, ROUGHY_SIGNING_KEY): it only signs the
// download URLs this server serves itself, i.e. with --storage local. There
// the default is a random key generated on first start and kept in
// <data-dir>/signing-key (0600), so URLs survive restarts. With --storage
// s3 every download_url is an S3 presigned URL signed with the AWS
// credentials, no Roughy key is involved, and a node without --signing-key
// uses a random per-process key. Nodes that serve local downloads behind
// one balancer (a shared data dir) must share the key: put the same value
// in ROUGHY_SIGNING_KEY on every node (at least 16 characters).
//
// Keys: ROUGHY_API_KEYS="acme=rk_live_…,globex=rk_live_…" adds static
// keys on start (already stored ones are kept). With the embedded session
// store (--sessions local) and no key at all, the first start creates a
// development key for account "dev", prints it, and writes it to
// <data-dir>/dev-api-key (0600). "roughy keys" needs the store to itself
// with --sessions local (bbolt locks the file): stop serve first, or use
// Redis.
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
  quota show --account NAME   an account's quota limits and usage
  quota set --account NAME [--bytes-stored SIZE] [--uploads N] [--bytes-reserved SIZE]
                              set an account's quotas (unlimited, default)
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
	case "quota":
		err = c.quota(ctx, args[1:])
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
