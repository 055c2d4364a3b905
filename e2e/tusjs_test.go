package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// jsFacts is the JSON line e2e/js/upload.mjs prints on success.
type jsFacts struct {
	URL              string   `json:"url"`
	AssetID          string   `json:"asset_id"`
	Requests         []string `json:"requests"`
	AbortedAt        int64    `json:"aborted_at"`
	AbortPatchOffset int64    `json:"abort_patch_offset"`
	StoredURL        string   `json:"stored_url"`
	ResumeHeadOffset *int64   `json:"resume_head_offset"`
	FirstPatchOffset *int64   `json:"first_patch_offset"`
}

// requireNodeModules fails unless node and tus-js-client are installed
// (scripts/setup-deps.sh runs npm ci in e2e/js).
func requireNodeModules(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node not installed: %v", err)
	}
	pkg, err := os.ReadFile(filepath.Join("js", "node_modules", "tus-js-client", "package.json"))
	if err != nil {
		t.Fatalf("tus-js-client not installed (run scripts/setup-deps.sh): %v", err)
	}
	var p struct{ Version string }
	if err := json.Unmarshal(pkg, &p); err != nil || p.Version != "4.3.1" {
		t.Fatalf("tus-js-client version: got %q (%v), want 4.3.1", p.Version, err)
	}
}

// runTusJS runs upload.mjs in mode against s and returns its facts.
func runTusJS(t *testing.T, s *server, mode, file string, extraEnv ...string) jsFacts {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("js", "upload.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	env := append([]string{
		"ROUGHY_ENDPOINT=" + s.Endpoint(), "ROUGHY_KEY=" + acmeKey,
		"ROUGHY_FILE=" + file, "ROUGHY_MODE=" + mode,
	}, extraEnv...)
	out := runCmd(t, 3*time.Minute, env, "node", script)
	var f jsFacts
	line := strings.TrimSpace(out)
	if i := strings.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if err := json.Unmarshal([]byte(line), &f); err != nil {
		t.Fatalf("upload.mjs output %q: %v", out, err)
	}
	t.Logf("tus-js-client %s: url %s asset %s; requests %v", mode, f.URL, f.AssetID, f.Requests)
	if f.AssetID == "" {
		t.Fatalf("upload.mjs found no asset id in the creating POST's body")
	}
	if !strings.HasPrefix(f.URL, s.Endpoint()+"/") {
		t.Errorf("upload url: got %q, want under %s", f.URL, s.Endpoint())
	}
	if st, a := getAsset(t, s, acmeKey, f.AssetID); st != 200 || a.Type != "video" || a.ContentType != "video/mp4" || a.Filename != "tus-js.mp4" {
		t.Errorf("asset metadata: got %d %+v, want video, video/mp4, tus-js.mp4", st, a)
	}
	return f
}

// TestTusJSClient drives tus-js-client 4.3.1 under Node through each of
// the upload styles the seed guide's users rely on.
func TestTusJSClient(t *testing.T) {
	requireNodeModules(t)
	s := startServer(t)
	// Not a multiple of the 5 MiB chunk size, so the last chunk is short.
	data := randomBytes(23<<20 + 12345)
	file := writeTemp(t, "source.bin", data)

	t.Run("plain", func(t *testing.T) {
		f := runTusJS(t, s, "plain", file)
		wantReady(t, s, acmeKey, f.AssetID, data)
	})
	t.Run("abort-resume", func(t *testing.T) {
		store := filepath.Join(t.TempDir(), "tus-urls.json")
		f := runTusJS(t, s, "abort-resume", file, "ROUGHY_CHUNK="+strconv.Itoa(2<<20), "ROUGHY_STORE="+store)
		t.Logf("aborted the PATCH at %d (sent at most %d of %d); stored url %s; resume HEAD offset %v; first PATCH offset %v",
			f.AbortPatchOffset, f.AbortedAt, len(data), f.StoredURL, deref(f.ResumeHeadOffset), deref(f.FirstPatchOffset))
		if f.StoredURL != f.URL {
			t.Errorf("resumed url %q is not the stored url %q", f.URL, f.StoredURL)
		}
		if f.AbortPatchOffset <= 0 {
			t.Errorf("aborted PATCH offset %d: want > 0 (earlier chunks acknowledged)", f.AbortPatchOffset)
		}
		if f.ResumeHeadOffset == nil || *f.ResumeHeadOffset < f.AbortPatchOffset || *f.ResumeHeadOffset > f.AbortedAt {
			t.Errorf("resume HEAD offset: got %v, want in [%d, %d]", deref(f.ResumeHeadOffset), f.AbortPatchOffset, f.AbortedAt)
		}
		if f.FirstPatchOffset == nil || f.ResumeHeadOffset == nil || *f.FirstPatchOffset != *f.ResumeHeadOffset {
			t.Errorf("first PATCH after resume at %v, want the HEAD offset %v", deref(f.FirstPatchOffset), deref(f.ResumeHeadOffset))
		}
		wantReady(t, s, acmeKey, f.AssetID, data)
	})
	t.Run("parallelUploads", func(t *testing.T) {
		f := runTusJS(t, s, "parallel", file)
		posts := 0
		for _, r := range f.Requests {
			if strings.HasPrefix(r, "POST 201") {
				posts++
			}
		}
		if posts != 4 {
			t.Errorf("POSTs: got %d, want 3 partial + 1 final", posts)
		}
		wantReady(t, s, acmeKey, f.AssetID, data)
	})
	t.Run("uploadLengthDeferred", func(t *testing.T) {
		f := runTusJS(t, s, "deferred", file)
		wantReady(t, s, acmeKey, f.AssetID, data)
	})
	t.Run("uploadDataDuringCreation", func(t *testing.T) {
		f := runTusJS(t, s, "creation-data", file)
		if len(f.Requests) == 0 || !strings.HasPrefix(f.Requests[0], "POST 201 5242880") {
			t.Errorf("creation POST: got %v, want POST 201 with Upload-Offset 5242880", f.Requests)
		}
		wantReady(t, s, acmeKey, f.AssetID, data)
	})
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}
