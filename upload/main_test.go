package upload

import (
	"os"
	"testing"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestMain stops the SeaweedFS that the put tests share (testsvc's
// StartS3Backend) once every test ran.
func TestMain(m *testing.M) { os.Exit(testsvc.RunStoppingSharedS3(m)) }
