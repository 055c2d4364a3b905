package proxy

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/roughy/ingest/apikey"
)

// answer is a response reduced to what must not tell a foreign upload from
// an unknown one: status, headers (but per-request ones) and body, with
// the asked id replaced so that the two can be compared.
func answer(r resp, id string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n", r.status)
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range r.h {
			if !yield(k) {
				return
			}
		}
	}) {
		if k == "Date" || k == "X-Request-Id" {
			continue
		}
		fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(r.h[k], ", "))
	}
	b.WriteString(strings.ReplaceAll(string(r.body), id, "{id}"))
	return b.String()
}

// TestForeignUploadLooksUnknown: on every route that names an upload or
// asset, another account's (in progress, ready, or a partial upload) gets
// exactly the answer an unknown id gets, and none of those requests
// changes the owner's uploads (SPEC: never reveal that it exists).
func TestForeignUploadLooksUnknown(t *testing.T) {
	e := newEnv(t, nil, nil)
	data := []byte("0123456789")
	inProgress := e.create("acme", 10)
	e.patch("acme", inProgress.Location, 0, data[:5])
	ready := e.create("acme", 10)
	e.patch("acme", ready.Location, 0, data)
	partial := e.create("acme", 5, "Upload-Concat", "partial")
	e.patch("acme", partial.Location, 0, data[:5])
	unknown := apikey.NewID()

	tus := func(kv ...string) http.Header { return e.tusHdr("globex", kv...) }
	auth := hdr("Authorization", "Bearer "+e.keys["globex"])
	patchHdr := []string{"Content-Type", "application/offset+octet-stream", "Upload-Offset", "5"}
	probes := []struct {
		name string
		send func(id string) resp
	}{
		{"HEAD", func(id string) resp { return e.do("HEAD", uploadsPath+"/"+id, tus(), nil) }},
		{"PATCH", func(id string) resp { return e.do("PATCH", uploadsPath+"/"+id, tus(patchHdr...), data[5:]) }},
		{"POST as HEAD", func(id string) resp {
			return e.do("POST", uploadsPath+"/"+id, tus("X-HTTP-Method-Override", "HEAD"), nil)
		}},
		{"POST as PATCH", func(id string) resp {
			return e.do("POST", uploadsPath+"/"+id, tus(append(patchHdr, "X-HTTP-Method-Override", "PATCH")...), data[5:])
		}},
		{"POST final concatenation", func(id string) resp {
			return e.do("POST", uploadsPath, tus("Upload-Concat", "final;"+e.url+uploadsPath+"/"+id,
				"Upload-Metadata", md("type", "video")), nil)
		}},
		{"GET asset", func(id string) resp { return e.do("GET", assetsPath+id, auth, nil) }},
		{"HEAD asset", func(id string) resp { return e.do("HEAD", assetsPath+id, auth, nil) }},
		// Last: were they to act, the probes above would see it.
		{"POST as DELETE", func(id string) resp {
			return e.do("POST", uploadsPath+"/"+id, tus("X-HTTP-Method-Override", "DELETE"), nil)
		}},
		{"DELETE", func(id string) resp { return e.do("DELETE", uploadsPath+"/"+id, tus(), nil) }},
	}
	for _, foreign := range []created{inProgress, ready, partial} {
		for _, p := range probes {
			got, want := answer(p.send(foreign.SessionID), foreign.SessionID), answer(p.send(unknown), unknown)
			if got != want {
				t.Errorf("%s of acme's upload %s as globex:\n%s\nwant the answer of an unknown id:\n%s", p.name, foreign.SessionID, got, want)
			}
		}
	}

	// acme's uploads are as they were.
	if h := e.head("acme", inProgress.Location); h.status != http.StatusOK || h.h.Get("Upload-Offset") != "5" {
		t.Errorf("owner's HEAD of the upload in progress: %d offset %q, want 200 5", h.status, h.h.Get("Upload-Offset"))
	}
	if r, a := e.getAsset("acme", ready.SessionID); r.status != http.StatusOK || a.State != "ready" {
		t.Fatalf("owner's GET of the ready asset: %d %s, want 200 ready", r.status, r.body)
	} else if d := e.do("GET", a.DownloadURL, nil, nil); d.status != http.StatusOK || string(d.body) != string(data) {
		t.Errorf("owner's download: %d %q, want 200 %q", d.status, d.body, data)
	}
	r := e.do("POST", uploadsPath, e.tusHdr("acme", "Upload-Concat", "final;"+partial.Location,
		"Upload-Metadata", md("type", "video")), nil)
	if r.status != http.StatusCreated {
		t.Fatalf("owner's concatenation of the partial upload: %d %s, want 201", r.status, r.body)
	}
	loc := r.h.Get("Location")
	e.wantReady("acme", loc[strings.LastIndexByte(loc, '/')+1:], data[:5])
}
