package e2e

import (
	"testing"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestUploadModel runs random upload sequences (TUS and the IETF draft,
// known and deferred lengths, chunks around the part and page edges,
// empty last requests, cut bodies) on the embedded default and downloads
// every finished upload to compare it with its source.
func TestUploadModel(t *testing.T) {
	s := startServer(t)
	m := testsvc.UploadModel{Base: s.URL, Key: acmeKey}
	for seed := range uint64(16) {
		m.Run(t, 1000+seed)
	}
}
