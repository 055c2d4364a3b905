package e2e

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestTusJSClientIETF drives tus-js-client 4.3.1 with the draft's
// protocols: 'ietf-draft-03' (interop 5) and 'ietf-draft-05' (interop 6,
// application/partial-upload), a plain upload and an abort and resume.
func TestTusJSClientIETF(t *testing.T) {
	requireNodeModules(t)
	s := startServer(t)
	data := randomBytes(11<<20 + 4321)
	file := writeTemp(t, "source.bin", data)
	for _, proto := range []string{"ietf-draft-03", "ietf-draft-05"} {
		t.Run(proto+"/plain", func(t *testing.T) {
			f := runTusJS(t, s, "plain", file, "ROUGHY_PROTOCOL="+proto)
			// Careful creation (201), then 5 MiB appends, each 201 (the
			// drafts up to -05 answer an incomplete append so): the last
			// one ends the upload and is answered with the asset (200).
			want := []string{"POST 201 0", "PATCH 201 5242880", "PATCH 201 10485760", "PATCH 200 " + strconv.Itoa(len(data))}
			if strings.Join(f.Requests, "|") != strings.Join(want, "|") {
				t.Errorf("requests: got %v, want %v", f.Requests, want)
			}
			wantReady(t, s, acmeKey, f.AssetID, data)
		})
		t.Run(proto+"/abort-resume", func(t *testing.T) {
			store := filepath.Join(t.TempDir(), "tus-urls.json")
			f := runTusJS(t, s, "abort-resume", file, "ROUGHY_PROTOCOL="+proto, "ROUGHY_CHUNK="+strconv.Itoa(2<<20), "ROUGHY_STORE="+store)
			if f.StoredURL != f.URL {
				t.Errorf("resumed url %q is not the stored url %q", f.URL, f.StoredURL)
			}
			if f.ResumeHeadOffset == nil || *f.ResumeHeadOffset < f.AbortPatchOffset || *f.ResumeHeadOffset > f.AbortedAt {
				t.Errorf("resume HEAD offset: got %v, want in [%d, %d]", deref(f.ResumeHeadOffset), f.AbortPatchOffset, f.AbortedAt)
			}
			if f.FirstPatchOffset == nil || f.ResumeHeadOffset == nil || *f.FirstPatchOffset != *f.ResumeHeadOffset {
				t.Errorf("first PATCH after resume at %v, want the HEAD offset %v", deref(f.FirstPatchOffset), deref(f.ResumeHeadOffset))
			}
			wantReady(t, s, acmeKey, f.AssetID, data)
		})
	}
}
