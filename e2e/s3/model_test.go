package s3e2e

import (
	"testing"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestUploadModel runs random upload sequences (TUS and the IETF draft,
// known and deferred lengths, chunks around the part and page edges,
// empty last requests, cut bodies) on S3 with both part layouts, and
// downloads every finished upload to compare it with its source: the
// asset's sha256 is computed on the way in and cannot see an object that
// storage holds short.
func TestUploadModel(t *testing.T) {
	for _, layout := range []string{"default", "equal"} {
		t.Run(layout, func(t *testing.T) {
			t.Parallel()
			gw := startGateway(t)
			r := startRoughy(t, gw, "--s3-layout", layout)
			m := testsvc.UploadModel{Base: r.URL, Key: acmeKey}
			for seed := range uint64(16) {
				m.Run(t, 2000+seed)
			}
		})
	}
}
