package main

import (
	"errors"
	"io"
	"testing"
)

// TestServeTLSFlagsGoTogether: --tls-cert without --tls-key (or the
// reverse, flag or environment twin) is a usage error, before anything
// is opened.
func TestServeTLSFlagsGoTogether(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"cert only", []string{"--tls-cert", "/nonexistent/cert.pem"}, nil},
		{"key only", []string{"--tls-key", "/nonexistent/key.pem"}, nil},
		{"env cert only", nil, map[string]string{"ROUGHY_TLS_CERT": "/nonexistent/cert.pem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cli{stdout: io.Discard, stderr: io.Discard, lookup: envMap(tc.env)}
			args := append([]string{"--data-dir", t.TempDir()}, tc.args...)
			if err := c.serve(t.Context(), args); !errors.Is(err, errUsage) {
				t.Fatalf("serve %v (env %v): %v, want a usage error", tc.args, tc.env, err)
			}
		})
	}
}
