package upload

import (
	"os"
	"testing"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestMain stops the SeaweedFS that the put tests share (testsvc's
// StartS3Backend) once every test ran, and removes its data directory.
func TestMain(m *testing.M) {
	code := m.Run()
	testsvc.StopSharedS3()
	os.Exit(code)
}
