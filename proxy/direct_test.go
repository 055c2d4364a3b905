package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/sessionstore"

	"github.com/roughy/ingest/sessionstore/redis"
)

// mintDirect makes a direct upload of account with the API and returns
// its id and upload URL.
func (e *env) mintDirect(account string) (id, uploadURL string) {
	e.t.Helper()
	r := e.do("POST", directPath, hdr("Authorization", "Bearer "+e.keys[account], "Content-Type", "application/json"),
		[]byte(`{"type":"video","filename":"direct.mp4","content_type":"video/mp4","expires_in":600}`))
	var d directJSON
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &d) != nil || d.UploadURL == "" {
		e.t.Fatalf("mint direct upload: %d %s, want 201 with an upload_url", r.status, r.body)
	}
	return d.ID, d.UploadURL
}

// directPost is a TUS creation of length bytes on a direct upload URL,
// without a key.
func (e *env) directPost(uploadURL string, length int) resp {
	e.t.Helper()
	return e.do("POST", uploadURL, e.tusHdr("", "Upload-Length", strconv.Itoa(length)), nil)
}

// breakStorage makes the local sink's Create of upload id fail (a
// directory where its file goes) until the returned func is called.
func (e *env) breakStorage(id string) (repair func()) {
	e.t.Helper()
	path := filepath.Join(e.dir, "uploads", id)
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o750); err != nil {
		e.t.Fatalf("break storage: %v", err)
	}
	return func() {
		if err := os.RemoveAll(path); err != nil {
			e.t.Fatalf("repair storage: %v", err)
		}
	}
}

// TestDirectStorageCreateFails: the storage of a direct upload cannot be
// made when its creation claims the grant (503). The grant is not lost to
// that: the client's retried POST on the same URL, or a PATCH of a client
// that resumes with HEAD, makes the storage, and the upload completes.
// The grant still creates one upload only.
func TestDirectStorageCreateFails(t *testing.T) {
	data := bytes.Repeat([]byte("direct upload bytes "), 3000)
	for _, resume := range []string{"POST", "PATCH"} {
		t.Run(resume, func(t *testing.T) {
			e := newEnv(t, nil, nil)
			id, url := e.mintDirect("acme")
			repair := e.breakStorage(id)
			if r := e.directPost(url, len(data)); r.status != http.StatusServiceUnavailable {
				t.Fatalf("POST while the storage fails: %d %s, want 503", r.status, r.body)
			}
			repair()
			if resume == "POST" {
				r := e.directPost(url, len(data))
				if r.status != http.StatusCreated || r.h.Get("Location") != url {
					t.Fatalf("retried POST: %d %s Location %q, want 201 and Location = the URL", r.status, r.body, r.h.Get("Location"))
				}
			} else if h := e.head("", url); h.status != http.StatusOK || h.h.Get("Upload-Offset") != "0" {
				t.Fatalf("HEAD after the failed POST: %d offset %q, want 200 and 0", h.status, h.h.Get("Upload-Offset"))
			}
			if r := e.patch("", url, 0, data[:len(data)/2]); r.status != http.StatusNoContent {
				t.Fatalf("PATCH 1: %d %s, want 204", r.status, r.body)
			}
			if r := e.patch("", url, int64(len(data)/2), data[len(data)/2:]); r.status != http.StatusNoContent {
				t.Fatalf("PATCH 2: %d %s, want 204", r.status, r.body)
			}
			e.wantReady("acme", id, data)
			if r := e.directPost(url, len(data)); r.status != http.StatusForbidden || r.errorCode() != "direct_upload_used" {
				t.Errorf("POST after the upload completed: %d %s, want 403 direct_upload_used", r.status, r.body)
			}
		})
	}
}

// TestDirectRepeatCreation: a POST on a URL whose upload exists with its
// storage is a second creation, refused, before and after a DELETE of the
// upload; the first creation's upload is untouched by it.
func TestDirectRepeatCreation(t *testing.T) {
	e := newEnv(t, nil, nil)
	id, url := e.mintDirect("acme")
	if r := e.directPost(url, 10); r.status != http.StatusCreated {
		t.Fatalf("POST: %d %s, want 201", r.status, r.body)
	}
	if r := e.patch("", url, 0, []byte("01234")); r.status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s, want 204", r.status, r.body)
	}
	for _, length := range []int{10, 20} {
		if r := e.directPost(url, length); r.status != http.StatusForbidden || r.errorCode() != "direct_upload_used" {
			t.Errorf("second POST of length %d: %d %s, want 403 direct_upload_used", length, r.status, r.body)
		}
	}
	if h := e.head("", url); h.h.Get("Upload-Offset") != "5" {
		t.Errorf("offset after the refused POSTs: %q, want 5", h.h.Get("Upload-Offset"))
	}
	if got := e.stored(id); string(got) != "01234" {
		t.Errorf("stored bytes after the refused POSTs: %q, want %q", got, "01234")
	}
	if r := e.do("DELETE", url, e.tusHdr(""), nil); r.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s, want 204", r.status, r.body)
	}
	if r := e.directPost(url, 10); r.status != http.StatusForbidden || r.errorCode() != "direct_upload_used" {
		t.Errorf("POST after DELETE: %d %s, want 403 direct_upload_used", r.status, r.body)
	}
}

// resentClaims is a store whose every direct upload claim is sent twice,
// as the Redis client does when the reply to the first was lost.
type resentClaims struct{ sessionstore.Store }

func (r resentClaims) ClaimDirectUpload(ctx context.Context, id, claim string, now time.Time, s sessionstore.Session, a sessionstore.Asset) error {
	if err := r.Store.ClaimDirectUpload(ctx, id, claim, now, s, a); err != nil {
		return err
	}
	return r.Store.ClaimDirectUpload(ctx, id, claim, now, s, a)
}

// TestDirectClaimResentRedis: over Redis, the claim of a direct upload's
// creation reaches the store twice (its first reply lost). The creation
// succeeds and the upload completes; another creation, and one after the
// upload's DELETE, are still refused.
func TestDirectClaimResentRedis(t *testing.T) {
	rs, err := redis.New(t.Context(), testsvc.StartRedis(t))
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { rs.Close() })
	e := newEnv(t, nil, func(sessionstore.Store) sessionstore.Store { return resentClaims{rs} })
	secret, k := apikey.New("acme")
	if err := rs.CreateKey(t.Context(), k); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	e.keys["acme"] = secret

	data := bytes.Repeat([]byte("resent claim "), 1000)
	id, url := e.mintDirect("acme")
	if r := e.directPost(url, len(data)); r.status != http.StatusCreated || r.h.Get("Location") != url {
		t.Fatalf("POST whose claim was resent: %d %s, want 201 and Location = the URL", r.status, r.body)
	}
	if r := e.patch("", url, 0, data); r.status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s, want 204", r.status, r.body)
	}
	e.wantReady("acme", id, data)
	if r := e.directPost(url, len(data)); r.status != http.StatusForbidden || r.errorCode() != "direct_upload_used" {
		t.Errorf("second POST: %d %s, want 403 direct_upload_used", r.status, r.body)
	}

	// Deleted before any byte: the grant stays used.
	id2, url2 := e.mintDirect("acme")
	if r := e.directPost(url2, 10); r.status != http.StatusCreated {
		t.Fatalf("POST: %d %s, want 201", r.status, r.body)
	}
	if r := e.do("DELETE", url2, e.tusHdr(""), nil); r.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s, want 204", r.status, r.body)
	}
	if r := e.directPost(url2, 10); r.status != http.StatusForbidden || r.errorCode() != "direct_upload_used" {
		t.Errorf("POST after DELETE: %d %s, want 403 direct_upload_used", r.status, r.body)
	}
	if _, err := rs.Session(t.Context(), id2); err == nil {
		t.Errorf("the deleted upload has a session again")
	}
}

// TestDirectWrongToken: a direct upload URL whose token is altered, of
// another grant, missing, or whose id is unknown is refused with the same
// 403 for every method, before and after the creation, and writes
// nothing.
func TestDirectWrongToken(t *testing.T) {
	e := newEnv(t, nil, nil)
	id, url := e.mintDirect("acme")
	_, other := e.mintDirect("acme")
	base, token, _ := strings.Cut(url, "?token=")
	_, otherToken, _ := strings.Cut(other, "?token=")
	flipped := []byte(token)
	flipped[3] = 'A'
	if token[3] == 'A' {
		flipped[3] = 'B'
	}
	wrong := map[string]string{
		"altered token":       base + "?token=" + string(flipped),
		"another grant's":     base + "?token=" + otherToken,
		"no token":            base,
		"empty token":         base + "?token=",
		"unknown id":          strings.Replace(url, id, "019deafa-0000-7000-8000-000000000001", 1),
		"token with a suffix": url + "x",
	}
	check := func(when string) {
		t.Helper()
		for name, u := range wrong {
			for _, r := range []struct {
				method string
				resp   resp
			}{
				{"POST", e.directPost(u, 10)},
				{"HEAD", e.head("", u)},
				{"PATCH", e.patch("", u, 0, []byte("0123456789"))},
				{"DELETE", e.do("DELETE", u, e.tusHdr(""), nil)},
				{"GET", e.do("GET", u, nil, nil)},
			} {
				// HEAD has no body to name the code.
				if r.resp.status != http.StatusForbidden || (r.method != "HEAD" && r.resp.errorCode() != "invalid_upload_token") {
					t.Errorf("%s, %s %s: %d %s, want 403 invalid_upload_token", when, name, r.method, r.resp.status, r.resp.body)
				}
			}
		}
	}
	check("before the creation")
	if _, err := e.store.Session(t.Context(), id); err == nil {
		t.Fatalf("a POST with a wrong token created the upload")
	}
	if r := e.directPost(url, 10); r.status != http.StatusCreated {
		t.Fatalf("POST with the right token: %d %s, want 201", r.status, r.body)
	}
	check("after the creation")
	if h := e.head("", url); h.status != http.StatusOK || h.h.Get("Upload-Offset") != "0" {
		t.Errorf("HEAD with the right token after the refusals: %d offset %q, want 200 and 0", h.status, h.h.Get("Upload-Offset"))
	}
	data := []byte("0123456789")
	if r := e.patch("", url, 0, data); r.status != http.StatusNoContent {
		t.Fatalf("PATCH with the right token: %d %s, want 204", r.status, r.body)
	}
	e.wantReady("acme", id, data)
}

// lostClaimReply is the embedded store whose next direct upload claim is
// applied but answered as an outage (its reply lost, the resend failed
// too).
type lostClaimReply struct {
	sessionstore.Store
	lose atomic.Bool
}

func (l *lostClaimReply) ClaimDirectUpload(ctx context.Context, id, claim string, now time.Time, s sessionstore.Session, a sessionstore.Asset) error {
	err := l.Store.ClaimDirectUpload(ctx, id, claim, now, s, a)
	if err == nil && l.lose.CompareAndSwap(true, false) {
		return errOutage
	}
	return err
}

// TestDirectClaimReplyLostQuota: a claim that was applied but answered as
// failed (503) gives its quota hold back; the client's retried POST makes
// the storage and holds the quota again, and the completed upload is
// counted as stored.
func TestDirectClaimReplyLostQuota(t *testing.T) {
	lc := &lostClaimReply{}
	e := newEnv(t, nil, func(s sessionstore.Store) sessionstore.Store { lc.Store = s; return lc })
	usage := func() sessionstore.QuotaUsage {
		t.Helper()
		_, u, err := e.store.Quota(t.Context(), "acme")
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	data := bytes.Repeat([]byte("quota "), 500)
	id, url := e.mintDirect("acme")
	lc.lose.Store(true)
	if r := e.directPost(url, len(data)); r.status != http.StatusServiceUnavailable {
		t.Fatalf("POST whose claim's reply was lost: %d %s, want 503", r.status, r.body)
	}
	r := e.directPost(url, len(data))
	if r.status != http.StatusCreated || r.h.Get("Location") != url {
		t.Fatalf("retried POST: %d %s, want 201 and Location = the URL", r.status, r.body)
	}
	if got, want := usage(), (sessionstore.QuotaUsage{Uploads: 1, BytesReserved: int64(len(data))}); got != want {
		t.Errorf("usage after the retried POST: %+v, want %+v", got, want)
	}
	if r := e.patch("", url, 0, data); r.status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s, want 204", r.status, r.body)
	}
	e.wantReady("acme", id, data)
	if got, want := usage(), (sessionstore.QuotaUsage{BytesStored: int64(len(data))}); got != want {
		t.Errorf("usage after completion: %+v, want %+v", got, want)
	}
}
