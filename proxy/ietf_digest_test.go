package proxy

import (
	"crypto/sha256"
	"encoding/base64"
	"testing"
)

// TestSHA256MemberByteSequence: a sha-256 member must be a structured-field
// byte sequence, colons on both sides; a value missing either colon is
// refused rather than read as if it were whole.
func TestSHA256MemberByteSequence(t *testing.T) {
	sum := sha256.Sum256([]byte("roughy"))
	b64 := base64.StdEncoding.EncodeToString(sum[:])
	if got, err := sha256Member("sha-256=:" + b64 + ":"); err != nil || string(got) != string(sum[:]) {
		t.Fatalf("well-formed member: %x, %v; want %x", got, err, sum)
	}
	for _, v := range []string{"sha-256=" + b64 + ":", "sha-256=:" + b64, "sha-256=" + b64} {
		if got, err := sha256Member(v); err == nil {
			t.Errorf("%q: accepted as %x, want an error", v, got)
		}
	}
}
