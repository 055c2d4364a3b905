package proxy

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ready uploads data as a new asset of account with metadata kv and
// returns its JSON once ready.
func (e *env) ready(account string, data []byte, kv ...string) assetJSON {
	e.t.Helper()
	c := e.create(account, int64(len(data)), kv...)
	if r := e.patch(account, c.Location, 0, data); r.status != http.StatusNoContent {
		e.t.Fatalf("PATCH: %d %s, want 204", r.status, r.body)
	}
	r, a := e.getAsset(account, c.SessionID)
	if r.status != http.StatusOK || a.State != "ready" || a.DownloadURL == "" {
		e.t.Fatalf("GET asset: %d %s, want 200 ready with a download_url", r.status, r.body)
	}
	return a
}

// TestDeleteStopsDownload: DELETE of a ready asset frees its file, and the
// download_url issued before answers exactly what an unknown asset's does.
func TestDeleteStopsDownload(t *testing.T) {
	e := newEnv(t, nil, nil)
	a := e.ready("acme", []byte("0123456789"))
	if d := e.do("GET", a.DownloadURL, nil, nil); d.status != http.StatusOK {
		t.Fatalf("download before DELETE: %d, want 200", d.status)
	}
	if r := e.do("DELETE", uploadsPath+"/"+a.ID, e.tusHdr("acme"), nil); r.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s, want 204", r.status, r.body)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "uploads", a.ID)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stored file after DELETE: %v, want it gone", err)
	}
	unknown := "019deafa-0000-7000-8000-000000000001"
	got := answer(e.do("GET", a.DownloadURL, nil, nil), a.ID)
	want := answer(e.do("GET", e.url+downloadPath+unknown+"?token="+e.srv.signDownload(unknown, time.Now().Add(time.Hour)), nil, nil), unknown)
	if got != want {
		t.Errorf("download_url issued before the DELETE:\n%s\nwant the answer of an unknown asset:\n%s", got, want)
	}
}
