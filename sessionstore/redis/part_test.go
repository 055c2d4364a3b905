package redis

import (
	"testing"

	"github.com/roughy/ingest/sessionstore"
)

// TestRedisPartEncoding: parts round-trip with and without a checksum, and
// the four-field form written before checksums were kept still decodes.
func TestRedisPartEncoding(t *testing.T) {
	for _, p := range []sessionstore.Part{
		{Number: 7, Size: 16 << 20, Offset: 32 << 20, ETag: `"abc"`, Checksum: "AAAAAA=="},
		{Number: 1, Size: 5, Offset: 0, ETag: `"d"`},
	} {
		got, err := redisDecodePart(redisEncodePart(p))
		if err != nil || got != p {
			t.Fatalf("round trip of %+v: %+v, %v", p, got, err)
		}
	}
	got, err := redisDecodePart(`3:10:20:"old-etag"`)
	if want := (sessionstore.Part{Number: 3, Size: 10, Offset: 20, ETag: `"old-etag"`}); err != nil || got != want {
		t.Fatalf("old form: %+v, %v, want %+v", got, err, want)
	}
	if _, err := redisDecodePart("3:10"); err == nil {
		t.Fatal("corrupt part decoded")
	}
}
