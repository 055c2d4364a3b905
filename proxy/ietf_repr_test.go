package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// reprDigest is a Repr-Digest header value of b (sha-256).
func reprDigest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
}

// draftHdr is the header of a draft (interop 8) request of account.
func (e *env) draftHdr(account string, kv ...string) http.Header {
	h := hdr(kv...)
	h.Set("Upload-Draft-Interop-Version", "8")
	h.Set("Authorization", "Bearer "+e.keys[account])
	return h
}

// TestReprDigestCompared: a completing append whose Repr-Digest is not the
// upload's SHA-256 is refused, and one whose digest is right completes the
// upload with the bytes sent. Both with bytes in the completing request
// (the pipeline checks before the last commit) and with an empty one (the
// proxy checks the stored state).
func TestReprDigestCompared(t *testing.T) {
	e := newEnv(t, nil, nil)
	data := bytes.Repeat([]byte("roughy-repr-"), 400)
	wrong := append(bytes.Clone(data[:len(data)-1]), 'x')
	for _, emptyLast := range []bool{false, true} {
		first := 1000
		if emptyLast {
			first = len(data)
		}
		cr := e.do("POST", uploadsPath, e.draftHdr("acme", "Upload-Complete", "?0", "Content-Type", "video/mp4"), data[:first])
		if cr.status != http.StatusCreated {
			t.Fatalf("draft POST: %d %s", cr.status, cr.body)
		}
		loc := cr.h.Get("Location")
		rest := data[first:]
		app := func(digest string) resp {
			return e.do("PATCH", loc, e.draftHdr("acme", "Upload-Complete", "?1", "Upload-Offset", strconv.Itoa(first),
				"Content-Type", "application/partial-upload", "Repr-Digest", digest), rest)
		}
		if r := app(reprDigest(wrong)); r.status != http.StatusBadRequest || !bytes.Contains(r.body, []byte(`"code":"repr_digest_mismatch"`)) {
			t.Fatalf("empty last=%v: append with a wrong Repr-Digest: %d %s, want 400 repr_digest_mismatch", emptyLast, r.status, r.body)
		}
		if h := e.head("acme", loc); h.h.Get("Upload-Offset") != strconv.Itoa(first) {
			t.Fatalf("empty last=%v: offset after the refused append: %q, want %d", emptyLast, h.h.Get("Upload-Offset"), first)
		}
		if r := app(reprDigest(data)); r.status/100 != 2 {
			t.Fatalf("empty last=%v: append with the right Repr-Digest: %d %s", emptyLast, r.status, r.body)
		}
		id := loc[strings.LastIndexByte(loc, '/')+1:]
		if _, a := e.getAsset("acme", id); a.State != "ready" || a.SHA256 != sha256Hex(data) {
			t.Fatalf("empty last=%v: asset %q sha256 %s, want ready %s", emptyLast, a.State, a.SHA256, sha256Hex(data))
		}
		if got := e.stored(id); !bytes.Equal(got, data) {
			t.Fatalf("empty last=%v: stored %d bytes, want the %d sent", emptyLast, len(got), len(data))
		}
	}
}
