package apikey

import "testing"

// hashSink keeps Hash's answer alive, as a request does.
var hashSink string

// TestHash: a key's stored form is the hex SHA-256 of its secret (stores
// hold it), made with two allocations, the secret's bytes and the
// string (every authenticated request hashes its key).
func TestHash(t *testing.T) {
	const want = "aeb9663dae93718d41933b18ba793dfcdec0a93e6c8faf5ea86a599b7f99c93b"
	if got := Hash("rk_live_test"); got != want {
		t.Errorf("Hash = %s, want %s", got, want)
	}
	if n := testing.AllocsPerRun(100, func() { hashSink = Hash("rk_live_abcdefghijklmnopqrstuvwxyz234567") }); n > 2 {
		t.Errorf("Hash: %v allocations, want at most 2", n)
	}
}
