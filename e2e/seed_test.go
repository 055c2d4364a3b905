package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// makeMP4 renders a real H.264 MP4 with ffmpeg's lavfi sources. Lossless
// noise makes it large (about 40 MB a second) so that a 64 MiB chunk size
// still gives several PATCHes.
func makeMP4(t *testing.T, seconds string, minSize int64) string {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Fatalf("ffmpeg not installed (scripts/setup-deps.sh installs it): %v", err)
	}
	out := filepath.Join(t.TempDir(), "episode-42.mp4")
	runCmd(t, 3*time.Minute, nil, "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-t", seconds,
		"-vf", "noise=alls=30:allf=t",
		"-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p",
		out)
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() < minSize {
		t.Fatalf("ffmpeg made %d bytes, want at least %d", st.Size(), minSize)
	}
	return out
}

// bashScript runs a testdata script with bash. prelude runs first in the
// same shell (e.g. to print variables after sourcing), then the script is
// sourced unchanged.
func bashScript(t *testing.T, timeout time.Duration, env []string, prelude, script, epilogue string) string {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("testdata", script))
	if err != nil {
		t.Fatal(err)
	}
	return runCmd(t, timeout, env, "bash", "-c", prelude+"\n. \"$0\"\n"+epilogue, path)
}

// TestSeedCurlScript runs the seed guide's raw cURL script, its HEAD resume
// snippet, its verify request and its DELETE snippet against a real server.
func TestSeedCurlScript(t *testing.T) {
	for _, tool := range []string{"curl", "jq", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (scripts/setup-deps.sh installs it): %v", tool, err)
		}
	}
	file := makeMP4(t, "2.5", 64<<20+1)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("source MP4: %d bytes (%d PATCHes of 64 MiB)", len(data), (len(data)+maxPatch-1)/maxPatch)
	s := startServer(t)
	env := []string{"ROUGHY_TOKEN=" + acmeKey, "ROUGHY_API=" + s.URL, "ROUGHY_FILE=" + file}

	// 1+2. The upload script, unchanged; print the ids it read with jq.
	out := bashScript(t, 5*time.Minute, env, "", "seed_upload.sh",
		`printf 'SESSION_ID=%s\nASSET_ID=%s\nLOCATION=%s\n' "$SESSION_ID" "$ASSET_ID" "$LOCATION"`)
	vars := parseVars(out)
	want := fmt.Sprintf("Uploaded %d / %d bytes; asset_id=%s", len(data), len(data), vars["ASSET_ID"])
	if !strings.Contains(out, want) {
		t.Fatalf("script output:\n%s\nwant line %q", out, want)
	}
	uuidRE := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if !uuidRE.MatchString(vars["ASSET_ID"]) {
		t.Fatalf("asset id from jq: got %q, want a UUIDv7", vars["ASSET_ID"])
	}
	if vars["SESSION_ID"] == "" || vars["SESSION_ID"] == "null" {
		t.Fatalf("session id from jq: got %q", vars["SESSION_ID"])
	}
	loc := vars["LOCATION"]
	locEnv := append(env, "ROUGHY_LOCATION="+loc, "ROUGHY_ASSET_ID="+vars["ASSET_ID"])

	// HEAD resume snippet: the offset is the whole file.
	out = bashScript(t, time.Minute, locEnv, "", "seed_resume.sh", "")
	if want := fmt.Sprintf("Resume from offset %d", len(data)); !strings.Contains(out, want) {
		t.Fatalf("resume snippet: got %q, want %q", out, want)
	}

	// Verify request: state ready.
	out = bashScript(t, time.Minute, locEnv, "", "seed_verify.sh", "")
	var a asset
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("verify output %q: %v", out, err)
	}
	if a.ID != vars["ASSET_ID"] || a.State != "ready" || a.Type != "video" || a.ContentType != "video/mp4" {
		t.Fatalf("verify: got %+v, want id %s, ready, video, video/mp4", a, vars["ASSET_ID"])
	}
	if a.Filename != "episode-42.mp4" {
		t.Errorf("filename: got %q, want episode-42.mp4", a.Filename)
	}

	// duration_seconds appears within seconds (ffprobe, asynchronous).
	deadline := time.Now().Add(60 * time.Second)
	for a.DurationSeconds == nil {
		if time.Now().After(deadline) {
			t.Fatalf("duration_seconds still null 60s after the upload: %+v", a)
		}
		time.Sleep(250 * time.Millisecond)
		_, a = getAsset(t, s, acmeKey, vars["ASSET_ID"])
	}
	if !regexp.MustCompile(`^2\.[45]\d\d$`).MatchString(*a.DurationSeconds) {
		t.Errorf("duration_seconds: got %q, want about \"2.500\" (3 decimals)", *a.DurationSeconds)
	}
	// download_url bytes: same SHA-256 as the file and as the asset says.
	wantReady(t, s, acmeKey, a.ID, data)

	// DELETE snippet twice: 204 both times (curl wrapped to print the status).
	wrap := `curl() { command curl -s -o /dev/null -w '%{http_code}\n' "$@"; }`
	for i := range 2 {
		out = bashScript(t, time.Minute, locEnv, wrap, "seed_delete.sh", "")
		if strings.TrimSpace(out) != "204" {
			t.Fatalf("DELETE snippet #%d: got status %q, want 204", i+1, out)
		}
	}
	if st, _ := getAsset(t, s, acmeKey, vars["ASSET_ID"]); st != http.StatusNotFound {
		t.Errorf("GET deleted asset: got %d, want 404", st)
	}
}

// TestSeedResumeSnippet stops an upload after its first 64 MiB PATCH, asks
// the seed's HEAD snippet where to resume, and finishes from there.
func TestSeedResumeSnippet(t *testing.T) {
	data := randomBytes(64<<20 + 3<<20)
	s := startServer(t)
	up := createUpload(t, s, acmeKey, int64(len(data)))
	if rep := patch(t, up.Location, acmeKey, 0, data[:maxPatch]); rep.Status != http.StatusNoContent {
		t.Fatalf("PATCH 64 MiB: got %d %s, want 204", rep.Status, rep.Body)
	}
	env := []string{"ROUGHY_TOKEN=" + acmeKey, "ROUGHY_LOCATION=" + up.Location}
	out := bashScript(t, time.Minute, env, "", "seed_resume.sh", "")
	var off int64
	if _, err := fmt.Sscanf(strings.TrimSpace(out), "Resume from offset %d", &off); err != nil || off != maxPatch {
		t.Fatalf("resume snippet: got %q, want offset %d", out, maxPatch)
	}
	if rep := patch(t, up.Location, acmeKey, off, data[off:]); rep.Status != http.StatusNoContent {
		t.Fatalf("resume PATCH: got %d %s, want 204", rep.Status, rep.Body)
	}
	wantReady(t, s, acmeKey, up.AssetID, data)
}

// parseVars reads NAME=value lines.
func parseVars(out string) map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.ContainsAny(k, " /") {
			m[k] = v
		}
	}
	return m
}
