package proxy

import (
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
)

// fasthttpLogger sends fasthttp's own messages to slog, never a raw
// request: fasthttp quotes the request buffer into its parse errors,
// Authorization header included (a bearer key with
// "Content-Length: -5" reached the debug log).
type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	for i, a := range args {
		if err, ok := a.(error); ok {
			args[i] = withholdQuoted(err.Error())
		}
	}
	f.l.Debug("fasthttp", "msg", redactSecrets(strings.TrimSpace(fmt.Sprintf(format, args...))))
}

// quotedRE matches one Go-quoted string: fasthttp's errors carry request
// bytes (buffers, request lines, URIs, header values) only as %q.
var quotedRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// withholdQuoted replaces every quoted string of an error's text by its
// length: a buffer snippet may start in the middle of a header value, so
// no pattern could find a secret in it; the error's kind stays readable.
func withholdQuoted(s string) string {
	return quotedRE.ReplaceAllStringFunc(s, func(q string) string {
		return "<" + strconv.Itoa(len(q)-2) + " quoted bytes withheld>"
	})
}

// secretREs match credentials wherever they appear in a message, quoted
// or not: the Authorization header's value to the end of its line, a
// bearer credential, a signed download token, an API key.
var secretREs = []*regexp.Regexp{
	regexp.MustCompile(`(?i)(authorization\s*:)[^\r\n]*`),
	regexp.MustCompile(`(?i)(bearer\s+)[^\s"]+`),
	regexp.MustCompile(`(?i)(token=)[^\s&"]+`),
	regexp.MustCompile(`(rk_live_)[A-Za-z0-9_-]+`),
}

// redactSecrets replaces the credentials secretREs find with [redacted].
func redactSecrets(s string) string {
	for _, re := range secretREs {
		s = re.ReplaceAllString(s, "${1}[redacted]")
	}
	return s
}
