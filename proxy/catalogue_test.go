package proxy

import (
	"cmp"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestErrorCatalogue: every code is filled in, once.
func TestErrorCatalogue(t *testing.T) {
	seen := map[string]bool{}
	for i, c := range catalogue {
		if c.Code == "" || c.Status < 400 || c.Title == "" || c.Message == "" {
			t.Errorf("catalogue entry %d is incomplete: %+v", i, c)
		}
		if seen[c.Code] {
			t.Errorf("code %q is in the catalogue twice", c.Code)
		}
		seen[c.Code] = true
		if (c.ProblemType == "") != (c.ProblemTitle == "") {
			t.Errorf("code %q: a problem type needs its title: %+v", c.Code, c)
		}
	}
}

// TestErrorCatalogueDocs: docs/errors.md is the catalogue's (run with
// -update to regenerate it).
func TestErrorCatalogueDocs(t *testing.T) {
	golden(t, "../docs/errors.md", []byte(errorsDoc()))
}

// TestErrorsOnlyFromCatalogue: no file but catalogue.go makes an Error,
// so no code or status is sent that the catalogue does not list.
func TestErrorsOnlyFromCatalogue(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") || name == "catalogue.go" {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if cl, ok := n.(*ast.CompositeLit); ok {
				if id, ok := cl.Type.(*ast.Ident); ok && id.Name == "Error" {
					t.Errorf("%s: an Error made outside the catalogue; use a catalogue code's err, with or withf", fset.Position(cl.Pos()))
				}
			}
			return true
		})
	}
}

// errorsDoc renders docs/errors.md from the catalogue.
func errorsDoc() string {
	var b strings.Builder
	b.WriteString(`# Errors

<!-- Generated from proxy/catalogue.go by ` + "`go test ./proxy -run ErrorCatalogueDocs -update`" + `; do not edit. -->

Every error answer carries a stable code and a message safe to show to
users, with the status the code always has.

- TUS requests, and every route but the draft's, get a JSON body:
  ` + "`" + `{"error":{"code":"…","message":"…"}}` + "`" + `, plus ` + "`request_id`" + ` for
  ` + "`internal_error`" + ` (the server's log has the details under that id).
- Requests of the IETF resumable upload draft get ` + "`application/problem+json`" + `
  (RFC 9457): ` + "`type`" + ` ` + "`about:blank`" + ` with the status's phrase as
  ` + "`title`" + `, the same ` + "`code`" + `, and the message as ` + "`detail`" + `; the codes that
  the draft registers a problem type for use that type and its title.

Headers that come with a status: ` + "`Retry-After`" + ` on 503 (5 s) and 423 (1 s),
` + "`WWW-Authenticate`" + ` on 401, ` + "`Allow`" + ` on 405, ` + "`Tus-Version`" + ` on
` + "`unsupported_tus_version`" + `; 460 is sent as ` + "`460 Checksum Mismatch`" + `.

The message is the one listed unless the error says more: several codes
have messages that name the header, field or limit at fault (shown here
with &lt;placeholders&gt;).

| Status | Code | Meaning | Message |
|---|---|---|---|
`)
	cs := slices.Clone(catalogue[:])
	slices.SortFunc(cs, func(a, b errorEntry) int {
		return cmp.Or(cmp.Compare(a.Status, b.Status), strings.Compare(a.Code, b.Code))
	})
	for _, c := range cs {
		title := c.Title
		if c.ProblemType != "" {
			title += fmt.Sprintf(" (draft problem type `%s`, title %q)", c.ProblemType, c.ProblemTitle)
		}
		fmt.Fprintf(&b, "| %d %s | `%s` | %s | %s |\n", c.Status, docStatusText(c.Status), c.Code, mdCell(title), mdCell(c.Message))
	}
	return b.String()
}

func docStatusText(status int) string {
	if status == StatusChecksumMismatch {
		return string(checksumMismatchText)
	}
	return fasthttp.StatusMessage(status)
}

// mdCell escapes text for a Markdown table cell.
func mdCell(s string) string {
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;").Replace(s)
}
