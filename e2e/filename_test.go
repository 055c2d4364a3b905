package e2e

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// TestDownloadFilenameCleaned: a filename with a right-to-left override,
// CR, LF or NUL reaches the download's Content-Disposition cleaned in
// both its forms; browsers prefer filename*, so cleaning filename alone
// would still save "evil\u202egpj.exe" as what looks like a .jpg.
func TestDownloadFilenameCleaned(t *testing.T) {
	s := startServer(t)
	data := []byte("not really an exe")
	for name, want := range map[string]string{
		"evil\u202egpj.exe":  `attachment; filename="evil_gpj.exe"`,
		"a\r\nb\x00c.mp4":    `attachment; filename="a__b_c.mp4"`,
		"x\u2067y\u0085.mp4": `attachment; filename="x_y_.mp4"`,
	} {
		rep := do(t, req{Method: "POST", URL: s.Endpoint(), Key: acmeKey, Body: bytes.NewReader(data), Header: map[string]string{
			"Upload-Length": "17", "Upload-Metadata": videoMeta(name), "Content-Type": "application/offset+octet-stream",
		}})
		if rep.Status != http.StatusCreated {
			t.Fatalf("POST %q: %d %s", name, rep.Status, rep.Body)
		}
		loc := rep.Header.Get("Location")
		a := wantReady(t, s, acmeKey, loc[strings.LastIndexByte(loc, '/')+1:], data)
		resp, err := client.Get(a.DownloadURL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Content-Disposition"); got != want {
			t.Errorf("filename %q: Content-Disposition %q, want %q", name, got, want)
		}
	}
}
