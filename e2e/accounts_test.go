package e2e

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/apikey"
)

// TestAccountIsolation: globex's key gets what an unknown id gets on every
// request about acme's upload and asset (404; DELETE, idempotent, 204),
// and none of them changes it.
func TestAccountIsolation(t *testing.T) {
	s := startServer(t)
	data := randomBytes(1 << 20)
	up := createUpload(t, s, acmeKey, int64(len(data)))
	if rep := patch(t, up.Location, acmeKey, 0, data[:1000]); rep.Status != 204 {
		t.Fatalf("acme PATCH: got %d %s", rep.Status, rep.Body)
	}
	if rep := do(t, req{Method: "HEAD", URL: up.Location, Key: globexKey}); rep.Status != 404 {
		t.Errorf("globex HEAD: got %d, want 404", rep.Status)
	}
	wantError(t, "globex PATCH", patch(t, up.Location, globexKey, 1000, data[1000:2000]), 404)
	if rep := do(t, req{Method: "DELETE", URL: up.Location, Key: globexKey}); rep.Status != 204 {
		t.Errorf("globex DELETE: got %d %s, want 204 (as for an unknown id)", rep.Status, rep.Body)
	}
	if st, _ := getAsset(t, s, globexKey, up.AssetID); st != 404 {
		t.Errorf("globex GET asset: got %d, want 404", st)
	}
	// acme's upload is untouched.
	if off := headOffset(t, up.Location, acmeKey); off != 1000 {
		t.Fatalf("acme HEAD after globex's requests: got offset %d, want 1000", off)
	}
	if rep := patch(t, up.Location, acmeKey, 1000, data[1000:]); rep.Status != 204 {
		t.Fatalf("acme PATCH rest: got %d %s", rep.Status, rep.Body)
	}
	a := wantReady(t, s, acmeKey, up.AssetID, data)
	if st, _ := getAsset(t, s, globexKey, up.AssetID); st != 404 {
		t.Errorf("globex GET ready asset: got %d, want 404", st)
	}
	// The signed URL is the capability: it works without a key, but a
	// tampered token is 403.
	if i := strings.Index(a.DownloadURL, "token="); i >= 0 {
		bad := a.DownloadURL[:i+6] + "x" + a.DownloadURL[i+7:]
		resp, err := client.Get(bad)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("tampered download token: got %d, want 403", resp.StatusCode)
		}
	} else {
		t.Errorf("download_url %q has no token=", a.DownloadURL)
	}
}

var keyRE = regexp.MustCompile(`rk_live_[a-z0-9]+`)

// TestKeysCLI: `roughy keys create` prints a key that authenticates, `keys
// list` shows it without the secret, and `keys revoke` makes it 401. Here
// the server is stopped around each CLI call, so the CLI opens the store
// itself (TestKeysCLIWhileServing covers a running server).
func TestKeysCLI(t *testing.T) {
	dir := t.TempDir()
	keys := func(sub string, args ...string) string {
		return runCmd(t, 30*time.Second, nil, roughyBin, append([]string{"keys", sub, "--data-dir", dir}, args...)...)
	}
	out := keys("create", "--account", "initech")
	secret := keyRE.FindString(out)
	if secret == "" {
		t.Fatalf("keys create printed no rk_live_ key:\n%s", out)
	}
	id := apikey.Record("initech", secret).ID

	list := keys("list")
	if strings.Contains(list, secret) {
		t.Errorf("keys list shows the secret:\n%s", list)
	}
	if !strings.Contains(list, "initech") || !strings.Contains(list, id) {
		t.Errorf("keys list lacks account initech / id %s:\n%s", id, list)
	}

	s := startServer(t, withDataDir(dir))
	createUpload(t, s, secret, 10)
	off := secret[:len(secret)-1] + "a"
	if off == secret {
		off = secret[:len(secret)-1] + "b"
	}
	rep := do(t, req{Method: "POST", URL: s.Endpoint(), Key: off,
		Header: map[string]string{"Upload-Length": "1", "Upload-Metadata": videoMeta("x")}})
	wantError(t, "POST with a key one character off", rep, 401)
	s.Stop()

	keys("revoke", id)
	s.Restart()
	rep = do(t, req{Method: "POST", URL: s.Endpoint(), Key: secret,
		Header: map[string]string{"Upload-Length": "1", "Upload-Metadata": videoMeta("x")}})
	wantError(t, "POST with a revoked key", rep, 401)
	createUpload(t, s, acmeKey, 10) // static keys still work
}

// TestKeysCLIWhileServing: with the server running on the embedded store
// (which it holds open), `roughy keys` goes through the server's admin
// socket: a created key works at once, list shows it, revoke makes it 401
// at once although the key was used (so cached, default 10 s key cache),
// the same for a static key, which stays refused after a restart; and the
// socket is gone after the server stopped, when the CLI opens the store
// itself again.
func TestKeysCLIWhileServing(t *testing.T) {
	dir := t.TempDir()
	keys := func(sub string, args ...string) string {
		return runCmd(t, 10*time.Second, nil, roughyBin, append([]string{"keys", sub, "--data-dir", dir}, args...)...)
	}
	s := startServer(t, withDataDir(dir))
	if fi, err := os.Stat(filepath.Join(dir, "admin.sock")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v, %v (want mode 0600)", fi, err)
	}
	start := time.Now()
	secret := keyRE.FindString(keys("create", "--account", "hooli"))
	if secret == "" {
		t.Fatal("keys create printed no rk_live_ key")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("keys create took %v: it waited for the store lock instead of asking the server", d)
	}
	createUpload(t, s, secret, 10)
	id := apikey.Record("hooli", secret).ID
	if list := keys("list"); !strings.Contains(list, id) || strings.Contains(list, secret) {
		t.Errorf("keys list (via the server) lacks %s or shows the secret:\n%s", id, list)
	}
	keys("revoke", id)
	rep := do(t, req{Method: "POST", URL: s.Endpoint(), Key: secret,
		Header: map[string]string{"Upload-Length": "1", "Upload-Metadata": videoMeta("x")}})
	wantError(t, "POST with a key revoked while serving", rep, 401)

	createUpload(t, s, globexKey, 10)
	keys("revoke", apikey.Record("globex", globexKey).ID)
	rep = do(t, req{Method: "POST", URL: s.Endpoint(), Key: globexKey,
		Header: map[string]string{"Upload-Length": "1", "Upload-Metadata": videoMeta("x")}})
	wantError(t, "POST with a static key revoked while serving", rep, 401)
	s.Stop()
	s.Restart()
	rep = do(t, req{Method: "POST", URL: s.Endpoint(), Key: globexKey,
		Header: map[string]string{"Upload-Length": "1", "Upload-Metadata": videoMeta("x")}})
	wantError(t, "POST with a revoked static key after a restart", rep, 401)
	createUpload(t, s, acmeKey, 10) // the other static key still works

	s.Stop()
	if _, err := os.Stat(filepath.Join(dir, "admin.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("admin socket left after stop: %v", err)
	}
	if list := keys("list"); !strings.Contains(list, id) || !strings.Contains(list, "true") {
		t.Errorf("keys list (store opened directly) lacks revoked key %s:\n%s", id, list)
	}
}

// TestDevKey: the embedded default with no key at all creates a
// development key, writes it to <data dir>/dev-api-key, and it works;
// a restart keeps the same key.
func TestDevKey(t *testing.T) {
	s := startServer(t, noStaticKeys())
	raw, err := os.ReadFile(filepath.Join(s.DataDir, "dev-api-key"))
	if err != nil {
		t.Fatalf("dev-api-key: %v", err)
	}
	key := strings.TrimSpace(string(raw))
	if !keyRE.MatchString(key) {
		t.Fatalf("dev-api-key: got %q, want rk_live_…", key)
	}
	if !strings.Contains(s.log.tail(1<<20), key) {
		t.Errorf("the dev key was not printed at first start")
	}
	createUpload(t, s, key, 10)
	s.Stop()
	s.Restart()
	raw2, _ := os.ReadFile(filepath.Join(s.DataDir, "dev-api-key"))
	if strings.TrimSpace(string(raw2)) != key {
		t.Errorf("dev-api-key changed across a restart: %q → %q", key, raw2)
	}
	createUpload(t, s, key, 10)
}
