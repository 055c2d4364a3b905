package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const directPath = "/api/v1/direct-uploads"

// directUpload is the JSON of a minted direct upload.
type directUpload struct {
	ID             string   `json:"id"`
	UploadURL      string   `json:"upload_url"`
	ExpiresAt      string   `json:"expires_at"`
	MaxSizeBytes   *int64   `json:"max_size_bytes"`
	AllowedOrigins []string `json:"allowed_origins"`
	Asset          asset    `json:"asset"`
}

// mintDirect POSTs body to /api/v1/direct-uploads with key.
func mintDirect(t *testing.T, s *server, key string, body any) (reply, directUpload) {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	rep := do(t, req{Method: "POST", URL: s.URL + directPath, Key: key, NoTus: true, Body: bytes.NewReader(raw),
		Header: map[string]string{"Content-Type": "application/json"}})
	var d directUpload
	if rep.Status == http.StatusCreated {
		if err := json.Unmarshal(rep.Body, &d); err != nil {
			t.Fatalf("direct upload JSON %q: %v", rep.Body, err)
		}
	}
	return rep, d
}

// mustMint mints a direct upload or fails the test.
func mustMint(t *testing.T, s *server, body any) directUpload {
	t.Helper()
	rep, d := mintDirect(t, s, acmeKey, body)
	if rep.Status != http.StatusCreated {
		t.Fatalf("POST %s: got %d %s, want 201", directPath, rep.Status, rep.Body)
	}
	return d
}

// directCreate POSTs a TUS creation of length bytes to a direct upload URL,
// without any key; header adds or overrides headers.
func directCreate(t *testing.T, u string, length int64, header map[string]string) reply {
	t.Helper()
	h := map[string]string{"Upload-Length": fmt.Sprint(length), "Upload-Metadata": "filename " + b64("mine.mp4")}
	for k, v := range header {
		h[k] = v
	}
	return do(t, req{Method: "POST", URL: u, Header: h})
}

func errorCode(rep reply) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(rep.Body, &e)
	return e.Error.Code
}

// wantRefused checks status and error code of a refusal.
func wantRefused(t *testing.T, what string, rep reply, status int, code string) {
	t.Helper()
	if rep.Status != status || errorCode(rep) != code {
		t.Errorf("%s: got %d %s, want %d %s", what, rep.Status, rep.Body, status, code)
	}
}

// TestDirectUpload: a backend mints a URL with its key; a client with no
// key creates exactly one upload with it, resumes on the same URL and
// completes it; the asset goes waiting → uploading → ready with the grant's
// metadata.
func TestDirectUpload(t *testing.T) {
	s := startServer(t)
	data := randomBytes(3<<20 + 77)
	d := mustMint(t, s, map[string]any{"type": "video", "max_size_bytes": 8 << 20, "expires_in": 600,
		"filename": "from-backend.mp4", "content_type": "video/mp4", "metadata": map[string]string{"customer": "42"}})
	if d.ID == "" || d.Asset.ID != d.ID || d.Asset.State != "waiting" || d.Asset.SizeBytes != nil {
		t.Fatalf("minted: got %+v, want an id, its asset waiting with no size", d)
	}
	if d.MaxSizeBytes == nil || *d.MaxSizeBytes != 8<<20 {
		t.Errorf("max_size_bytes: got %v, want %d", d.MaxSizeBytes, 8<<20)
	}
	if exp, err := time.Parse(time.RFC3339, d.ExpiresAt); err != nil || time.Until(exp) < 9*time.Minute || time.Until(exp) > 11*time.Minute {
		t.Errorf("expires_at: got %q (%v), want about 10 minutes from now", d.ExpiresAt, err)
	}
	if !strings.HasPrefix(d.UploadURL, s.URL+directPath+"/"+d.ID+"/tus?token=") {
		t.Errorf("upload_url: got %q, want %s/%s/tus?token=…", d.UploadURL, s.URL+directPath, d.ID)
	}
	for _, k := range []string{acmeKey, "rk_live_"} {
		if strings.Contains(d.UploadURL, k) {
			t.Errorf("upload_url %q contains %q", d.UploadURL, k)
		}
	}
	if st, a := getAsset(t, s, acmeKey, d.ID); st != http.StatusOK || a.State != "waiting" || a.Filename != "from-backend.mp4" {
		t.Errorf("GET waiting asset: got %d %+v, want 200, state waiting, the grant's filename", st, a)
	}
	if st, _ := getAsset(t, s, globexKey, d.ID); st != http.StatusNotFound {
		t.Errorf("GET waiting asset with another account's key: got %d, want 404", st)
	}

	// GET on the URL shows its own asset, without a key.
	if rep := do(t, req{Method: "GET", URL: d.UploadURL, NoTus: true}); rep.Status != http.StatusOK || !bytes.Contains(rep.Body, []byte(`"state":"waiting"`)) {
		t.Errorf("GET on the URL before the creation: got %d %s, want 200 and the waiting asset", rep.Status, rep.Body)
	}

	rep := directCreate(t, d.UploadURL, int64(len(data)), nil)
	if rep.Status != http.StatusCreated || rep.Header.Get("Location") != d.UploadURL {
		t.Fatalf("POST to the direct URL: got %d %s Location %q, want 201 and Location = the URL", rep.Status, rep.Body, rep.Header.Get("Location"))
	}
	wantRefused(t, "second creation", directCreate(t, d.UploadURL, int64(len(data)), nil), http.StatusForbidden, "direct_upload_used")
	if st, a := getAsset(t, s, acmeKey, d.ID); st != http.StatusOK || a.State != "uploading" {
		t.Errorf("GET asset after the creation: got %d state %q, want 200 uploading", st, a.State)
	}

	if rep := patch(t, d.UploadURL, "", 0, data[:1<<20]); rep.Status != http.StatusNoContent {
		t.Fatalf("PATCH 1: got %d %s", rep.Status, rep.Body)
	}
	// The client "crashed": it resumes from HEAD on the same URL.
	off := headOffset(t, d.UploadURL, "")
	if off != 1<<20 {
		t.Fatalf("HEAD offset: got %d, want %d", off, 1<<20)
	}
	if rep := patch(t, d.UploadURL, "", off, data[off:]); rep.Status != http.StatusNoContent {
		t.Fatalf("PATCH 2: got %d %s", rep.Status, rep.Body)
	}
	a := wantReady(t, s, acmeKey, d.ID, data)
	if a.Filename != "from-backend.mp4" || a.ContentType != "video/mp4" || a.Type != "video" {
		t.Errorf("asset: got %+v, want the grant's filename, content type and type", a)
	}
	rep = do(t, req{Method: "GET", URL: d.UploadURL, NoTus: true})
	if rep.Status != http.StatusOK || !bytes.Contains(rep.Body, []byte(`"sha256":"`+sha256Hex(data)+`"`)) {
		t.Errorf("GET on the URL after completion: got %d %s, want 200 and the ready asset", rep.Status, rep.Body)
	}
	wantRefused(t, "creation after completion", directCreate(t, d.UploadURL, 10, nil), http.StatusForbidden, "direct_upload_used")
}

// TestDirectUploadRefusals: every refusal of a direct upload URL and of
// the minting endpoint.
func TestDirectUploadRefusals(t *testing.T) {
	s := startServer(t)
	mint := map[string]any{"type": "video", "max_size_bytes": 1000, "expires_in": 600}

	t.Run("mint", func(t *testing.T) {
		if rep, _ := mintDirect(t, s, "", mint); rep.Status != http.StatusUnauthorized {
			t.Errorf("mint without key: got %d %s, want 401", rep.Status, rep.Body)
		}
		for _, bad := range []map[string]any{
			{"expires_in": 60},
			{"type": "image", "expires_in": 60},
			{"type": "video", "max_size_bytes": 53687091201},
			{"type": "video", "max_size_bytes": 0},
			{"type": "video", "expires_in": -1},
			{"type": "video", "expires_in": 8 * 24 * 3600},
			{"type": "video", "allowed_origins": []string{"https://app.example/path"}},
			{"type": "video", "allowed_origins": []string{"ftp://app.example"}},
			{"type": "video", "content_type": "text/html\r\nX: y"},
			{"type": "video", "metadata": map[string]string{"bad key": "v"}},
			{"type": "video", "max_size": 10},
		} {
			rep, _ := mintDirect(t, s, acmeKey, bad)
			wantRefused(t, fmt.Sprintf("mint %v", bad), rep, http.StatusBadRequest, "invalid_direct_upload")
		}
	})

	t.Run("token", func(t *testing.T) {
		d := mustMint(t, s, mint)
		other := mustMint(t, s, mint)
		u, _ := url.Parse(d.UploadURL)
		tok := u.Query().Get("token")
		altered := strings.Replace(d.UploadURL, "token="+tok, "token="+tok[:len(tok)-2]+"AA", 1)
		if altered == d.UploadURL {
			altered = strings.Replace(d.UploadURL, "token="+tok, "token="+tok[:len(tok)-2]+"BB", 1)
		}
		wantRefused(t, "altered token", directCreate(t, altered, 10, nil), http.StatusForbidden, "invalid_upload_token")
		noToken := strings.Split(d.UploadURL, "?")[0]
		wantRefused(t, "no token", directCreate(t, noToken, 10, nil), http.StatusForbidden, "invalid_upload_token")
		// Another grant's token on this grant's id, and on an unknown id.
		ou, _ := url.Parse(other.UploadURL)
		swapped := s.URL + directPath + "/" + d.ID + "/tus?token=" + ou.Query().Get("token")
		wantRefused(t, "another grant's token", directCreate(t, swapped, 10, nil), http.StatusForbidden, "invalid_upload_token")
		unknown := s.URL + directPath + "/0190aaaa-0000-7000-8000-000000000000/tus?token=" + tok
		wantRefused(t, "unknown id", directCreate(t, unknown, 10, nil), http.StatusForbidden, "invalid_upload_token")
		// The token is no API key: the TUS endpoint refuses it.
		rep := do(t, req{Method: "POST", URL: s.Endpoint(), Key: tok, Header: map[string]string{"Upload-Length": "10", "Upload-Metadata": videoMeta("x.mp4")}})
		if rep.Status != http.StatusUnauthorized {
			t.Errorf("token as a bearer key on the TUS endpoint: got %d, want 401", rep.Status)
		}
		// Nothing created yet: HEAD, PATCH, DELETE have no upload.
		wantRefused(t, "HEAD before creation", do(t, req{Method: "HEAD", URL: d.UploadURL}), http.StatusNotFound, "")
		wantRefused(t, "PATCH before creation", patch(t, d.UploadURL, "", 0, []byte("x")), http.StatusNotFound, "not_found")
	})

	t.Run("limits", func(t *testing.T) {
		d := mustMint(t, s, mint)
		wantRefused(t, "Upload-Length over max_size_bytes", directCreate(t, d.UploadURL, 1001, nil), http.StatusRequestEntityTooLarge, "upload_too_large")
		wantRefused(t, "deferred length with max_size_bytes", directCreate(t, d.UploadURL, 0, map[string]string{"Upload-Length": "", "Upload-Defer-Length": "1"}),
			http.StatusBadRequest, "length_required")
		wantRefused(t, "another type", directCreate(t, d.UploadURL, 10, map[string]string{"Upload-Metadata": "type " + b64("audio")}),
			http.StatusForbidden, "type_not_allowed")
		wantRefused(t, "concatenation", directCreate(t, d.UploadURL, 10, map[string]string{"Upload-Concat": "partial"}),
			http.StatusForbidden, "concatenation_not_allowed")
		// None of those used the grant: a creation within the limits works,
		// and its upload takes no byte past its length.
		if rep := directCreate(t, d.UploadURL, 1000, map[string]string{"Upload-Metadata": "type " + b64("video/mp4")}); rep.Status != http.StatusCreated {
			t.Fatalf("creation within the limits: got %d %s", rep.Status, rep.Body)
		}
		wantRefused(t, "PATCH past the length", patch(t, d.UploadURL, "", 0, make([]byte, 1001)), http.StatusRequestEntityTooLarge, "past_upload_length")
		if off := headOffset(t, d.UploadURL, ""); off != 0 {
			t.Errorf("offset after the refused PATCH: got %d, want 0", off)
		}
		// DELETE through the URL ends its own upload, and only that.
		if rep := do(t, req{Method: "DELETE", URL: d.UploadURL}); rep.Status != http.StatusNoContent {
			t.Errorf("DELETE through the URL: got %d %s, want 204", rep.Status, rep.Body)
		}
		if st, _ := getAsset(t, s, acmeKey, d.ID); st != http.StatusNotFound {
			t.Errorf("asset after DELETE: got %d, want 404", st)
		}
		wantRefused(t, "creation after DELETE", directCreate(t, d.UploadURL, 10, nil), http.StatusForbidden, "direct_upload_used")
	})

	t.Run("expiry", func(t *testing.T) {
		d := mustMint(t, s, map[string]any{"type": "video", "expires_in": 1})
		used := mustMint(t, s, map[string]any{"type": "video", "expires_in": 1})
		if rep := directCreate(t, used.UploadURL, 20, nil); rep.Status != http.StatusCreated {
			t.Fatalf("creation before expiry: got %d %s", rep.Status, rep.Body)
		}
		time.Sleep(1500 * time.Millisecond)
		wantRefused(t, "creation after expiry", directCreate(t, d.UploadURL, 10, nil), http.StatusGone, "direct_upload_expired")
		if st, _ := getAsset(t, s, acmeKey, d.ID); st != http.StatusNotFound {
			t.Errorf("waiting asset of an expired grant: got %d, want 404", st)
		}
		// The expiry bounds the creation only: the created upload goes on.
		if rep := patch(t, used.UploadURL, "", 0, make([]byte, 20)); rep.Status != http.StatusNoContent {
			t.Errorf("PATCH after the grant's expiry: got %d %s, want 204", rep.Status, rep.Body)
		}
		if st, a := getAsset(t, s, acmeKey, used.ID); st != http.StatusOK || a.State != "ready" {
			t.Errorf("asset: got %d %q, want 200 ready", st, a.State)
		}
		wantReady(t, s, acmeKey, used.ID, make([]byte, 20))
	})

	t.Run("revoke", func(t *testing.T) {
		d := mustMint(t, s, mint)
		started := mustMint(t, s, mint)
		if rep := directCreate(t, started.UploadURL, 100, nil); rep.Status != http.StatusCreated {
			t.Fatalf("creation: got %d %s", rep.Status, rep.Body)
		}
		if rep := do(t, req{Method: "DELETE", URL: s.URL + directPath + "/" + d.ID, Key: globexKey, NoTus: true}); rep.Status != http.StatusNotFound {
			t.Errorf("revoke with another account's key: got %d, want 404", rep.Status)
		}
		for i := range 2 {
			if rep := do(t, req{Method: "DELETE", URL: s.URL + directPath + "/" + d.ID, Key: acmeKey, NoTus: true}); rep.Status != http.StatusNoContent {
				t.Errorf("revoke #%d: got %d %s, want 204", i+1, rep.Status, rep.Body)
			}
		}
		wantRefused(t, "creation after revoke", directCreate(t, d.UploadURL, 10, nil), http.StatusForbidden, "direct_upload_revoked")
		if st, _ := getAsset(t, s, acmeKey, d.ID); st != http.StatusNotFound {
			t.Errorf("waiting asset of a revoked grant: got %d, want 404", st)
		}
		if rep := do(t, req{Method: "DELETE", URL: s.URL + directPath + "/" + started.ID, Key: acmeKey, NoTus: true}); rep.Status != http.StatusNoContent {
			t.Errorf("revoke of a used grant: got %d, want 204", rep.Status)
		}
		wantRefused(t, "PATCH after revoke", patch(t, started.UploadURL, "", 0, make([]byte, 10)), http.StatusForbidden, "direct_upload_revoked")
		// The upload itself stays the account's, under its key.
		if st, a := getAsset(t, s, acmeKey, started.ID); st != http.StatusOK || a.State != "uploading" {
			t.Errorf("asset of a revoked used grant: got %d %q, want 200 uploading", st, a.State)
		}
		if rep := do(t, req{Method: "DELETE", URL: s.URL + directPath + "/0190aaaa-0000-7000-8000-000000000000", Key: acmeKey, NoTus: true}); rep.Status != http.StatusNotFound {
			t.Errorf("revoke of an unknown id: got %d, want 404", rep.Status)
		}
	})

	t.Run("origins", func(t *testing.T) {
		d := mustMint(t, s, map[string]any{"type": "video", "allowed_origins": []string{"https://App.Example"}})
		pre := func(origin string) reply {
			return do(t, req{Method: "OPTIONS", URL: d.UploadURL, NoTus: true, Header: map[string]string{
				"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "tus-resumable,upload-length"}})
		}
		if rep := pre("https://app.example"); rep.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
			!strings.Contains(rep.Header.Get("Access-Control-Allow-Methods"), "PATCH") {
			t.Errorf("preflight from the allowed origin: got %d %v, want it allowed", rep.Status, rep.Header)
		}
		if rep := pre("https://evil.example"); rep.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from another origin: got Access-Control-Allow-Origin %q, want none", rep.Header.Get("Access-Control-Allow-Origin"))
		}
		wantRefused(t, "creation from another origin", directCreate(t, d.UploadURL, 10, map[string]string{"Origin": "https://evil.example"}),
			http.StatusForbidden, "origin_not_allowed")
		rep := directCreate(t, d.UploadURL, 10, map[string]string{"Origin": "https://app.example"})
		if rep.Status != http.StatusCreated || rep.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
			!strings.Contains(rep.Header.Get("Access-Control-Expose-Headers"), "Location") {
			t.Errorf("creation from the allowed origin: got %d %v, want 201 with CORS headers", rep.Status, rep.Header)
		}
	})
}

// TestDirectUploadRacingCreations: eight creations with data
// (creation-with-upload) race on one direct upload URL of the embedded
// default. One wins; the losers must not touch its storage (every
// creation of a grant has the same upload id and so the same file): the
// winner's bytes stay, and the completed asset is intact.
func TestDirectUploadRacingCreations(t *testing.T) {
	s := startServer(t)
	data := randomBytes(4<<20 + 5)
	d := mustMint(t, s, map[string]any{"type": "video"})
	const racers = 8
	reps := make([]reply, racers)
	errs := make([]error, racers)
	start := make(chan struct{})
	done := make(chan int)
	for i := range racers {
		go func() {
			<-start
			reps[i], errs[i] = tryDo(t.Context(), req{Method: "POST", URL: d.UploadURL, Body: bytes.NewReader(data[:2<<20]), Header: map[string]string{
				"Upload-Length": fmt.Sprint(len(data)), "Content-Type": "application/offset+octet-stream", "Upload-Metadata": "filename " + b64("race.mp4")}})
			done <- i
		}()
	}
	close(start)
	for range racers {
		<-done
	}
	var created int
	for i, rep := range reps {
		switch {
		case errs[i] != nil:
			t.Errorf("POST %d: %v", i, errs[i])
		case rep.Status == http.StatusCreated:
			created++
		case rep.Status != http.StatusForbidden || errorCode(rep) != "direct_upload_used":
			t.Errorf("POST %d: got %d %s, want 201 or 403 direct_upload_used", i, rep.Status, rep.Body)
		}
	}
	if created != 1 {
		t.Fatalf("racing creations: got %d created, want 1", created)
	}
	if off := headOffset(t, d.UploadURL, ""); off != 2<<20 {
		t.Fatalf("offset after the race: got %d, want the winner's %d", off, 2<<20)
	}
	if rep := patch(t, d.UploadURL, "", 2<<20, data[2<<20:]); rep.Status != http.StatusNoContent {
		t.Fatalf("PATCH the rest: got %d %s", rep.Status, rep.Body)
	}
	wantReady(t, s, acmeKey, d.ID, data)
}
