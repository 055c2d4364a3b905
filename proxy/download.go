package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// Download tokens are "<unix expiry>.<base64url HMAC-SHA256>" over the
// asset id and the expiry, so neither can be changed.

func (as *assetsAPI) downloadMAC(id string, exp int64) []byte {
	m := hmac.New(sha256.New, as.sign)
	m.Write([]byte("roughy-download\x00"))
	m.Write([]byte(id))
	m.Write([]byte{0})
	m.Write(strconv.AppendInt(nil, exp, 10))
	return m.Sum(nil)
}

// signDownload returns a token for id valid until exp.
func (as *assetsAPI) signDownload(id string, exp time.Time) string {
	e := exp.Unix()
	return strconv.FormatInt(e, 10) + "." + base64.RawURLEncoding.EncodeToString(as.downloadMAC(id, e))
}

var errForbidden = codeInvalidToken.err()

// verifyDownload checks a token for id at now.
func (as *assetsAPI) verifyDownload(id, token string, now time.Time) error {
	es, mac, ok := strings.Cut(token, ".")
	if !ok {
		return errForbidden
	}
	exp, err := parseInt(es)
	if err != nil {
		return errForbidden
	}
	got, err := base64.RawURLEncoding.DecodeString(mac)
	if err != nil || !hmac.Equal(got, as.downloadMAC(id, exp)) {
		return errForbidden
	}
	if now.Unix() >= exp {
		return errForbidden
	}
	return nil
}

// byteRange is a satisfiable single range.
type byteRange struct{ start, length int64 }

var errRangeUnsatisfiable = errors.New("proxy: range not satisfiable")

// parseRange reads a Range header for an object of size bytes. ok false
// means "serve the whole object" (no header, a syntax it ignores, or
// several ranges); errRangeUnsatisfiable means 416.
func parseRange(h string, size int64) (r byteRange, ok bool, err error) {
	spec, found := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return r, false, nil
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return r, false, nil
	}
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)
	if first == "" {
		// Suffix range: the last n bytes.
		n, perr := parseInt(last)
		if perr != nil {
			return r, false, nil
		}
		if n == 0 || size == 0 {
			return r, false, errRangeUnsatisfiable
		}
		n = min(n, size)
		return byteRange{start: size - n, length: n}, true, nil
	}
	start, perr := parseInt(first)
	if perr != nil {
		return r, false, nil
	}
	end := size - 1
	if last != "" {
		e, perr := parseInt(last)
		if perr != nil || e < start {
			return r, false, nil
		}
		end = min(e, size-1)
	}
	if start >= size {
		return r, false, errRangeUnsatisfiable
	}
	return byteRange{start: start, length: end - start + 1}, true, nil
}

// objectBody streams a section of an object and closes it when fasthttp
// is done with the response.
type objectBody struct {
	*io.SectionReader
	obj pipeline.Object
}

func (b objectBody) Close() error { return b.obj.Close() }

// downloadMaxAge caps how long a client may cache a download; it is
// lowered to the token's remaining validity.
const downloadMaxAge = 5 * time.Minute

// download serves GET/HEAD /sign/assets/uploads/{id}?token=…: the
// bytes of a ready asset in the embedded default (S3 mode hands out
// presigned URLs).
func (as *assetsAPI) download(ctx context.Context, rc *fasthttp.RequestCtx, _ *request, p *params) error {
	id := p.id
	if !validID(id) {
		return errForbidden
	}
	token := string(rc.QueryArgs().Peek("token"))
	now := time.Now()
	if err := as.verifyDownload(id, token, now); err != nil {
		return err
	}
	a, err := as.readyAsset(ctx, id)
	if err != nil {
		return err
	}
	h := &rc.Response.Header
	h.Set("Accept-Ranges", "bytes")
	// Never cached past the token: a cache must not serve what the
	// link no longer grants.
	maxAge := min(downloadMaxAge, tokenExpiry(token).Sub(now))
	h.Set("Cache-Control", "private, max-age="+strconv.FormatInt(int64(maxAge/time.Second), 10))
	etag := ""
	if a.SHA256 != "" {
		etag = `"` + a.SHA256 + `"`
		h.Set("ETag", etag)
	}
	// The stored bytes never change once ready: the asset's creation is
	// its representation's last modification.
	modified := a.CreatedAt.UTC().Truncate(time.Second)
	h.Set("Last-Modified", modified.Format(httpTime))
	switch preconditions(&rc.Request.Header, etag, modified) {
	case fasthttp.StatusPreconditionFailed:
		return errPrecondition
	case fasthttp.StatusNotModified:
		rc.SetStatusCode(fasthttp.StatusNotModified)
		return nil
	}
	key := a.StorageKey
	if key == "" {
		key = storageKey(a.ID)
	}
	obj, err := as.pipe.Sink().Open(ctx, key)
	if err != nil {
		return fmt.Errorf("proxy: open %s: %w", key, err)
	}
	size := obj.Size()
	dh := downloadHeaders(a)
	h.SetContentType(dh.ContentType)
	h.Set("Content-Disposition", dh.ContentDisposition)
	status, r := fasthttp.StatusOK, byteRange{0, size}
	if rh := downloadRange(rc, etag); rh != nil {
		br, ok, rerr := parseRange(string(rh), size)
		switch {
		case rerr != nil:
			obj.Close()
			h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
			return codeRangeNotSatisfiable.err()
		case ok:
			status, r = fasthttp.StatusPartialContent, br
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", br.start, br.start+br.length-1, size))
		}
	}
	rc.SetStatusCode(status)
	if rc.IsHead() {
		obj.Close()
		h.SetContentLength(int(r.length))
		return nil
	}
	rc.SetBodyStream(objectBody{io.NewSectionReader(obj, r.start, r.length), obj}, int(r.length))
	return nil
}

// readyAsset loads the asset a download serves: a missing, deleted or
// not yet ready one is not found.
func (as *assetsAPI) readyAsset(ctx context.Context, id string) (sessionstore.Asset, error) {
	a, err := as.store.Asset(ctx, id)
	if errors.Is(err, sessionstore.ErrNotFound) || err == nil && (a.Deleted || a.State != sessionstore.StateReady) {
		return a, errNotFound
	}
	if err != nil {
		return a, fmt.Errorf("proxy: load asset: %w", err)
	}
	return a, nil
}

// downloadRange is the Range header a download honours, nil for the
// whole object.
func downloadRange(rc *fasthttp.RequestCtx, etag string) []byte {
	var rh []byte
	if !rc.IsHead() {
		// RFC 9110 14.2 defines Range for GET only: a HEAD describes the
		// whole object (200, its full Content-Length).
		rh = rc.Request.Header.Peek("Range")
	}
	if ir := rc.Request.Header.Peek("If-Range"); ir != nil && !strongMatch(strings.TrimSpace(string(ir)), etag) {
		// The client's copy is another version (or a date we cannot
		// compare): it gets the whole object, not a piece to splice in.
		rh = nil
	}
	return rh
}

var errPrecondition = codePreconditionFailed.err()

// preconditions evaluates a download's conditional headers in the order
// of RFC 9110 13.2.2: 412 when If-Match (or, without it,
// If-Unmodified-Since) is false, 304 when If-None-Match (or, without it,
// If-Modified-Since) is false, 0 to serve. Dates that do not parse are
// ignored, as the RFC asks.
func preconditions(h *fasthttp.RequestHeader, etag string, modified time.Time) int {
	if im := h.Peek("If-Match"); im != nil {
		if !ifMatch(string(im), etag) {
			return fasthttp.StatusPreconditionFailed
		}
	} else if t, ok := httpDate(h.Peek("If-Unmodified-Since")); ok && modified.After(t) {
		return fasthttp.StatusPreconditionFailed
	}
	if inm := h.Peek("If-None-Match"); inm != nil {
		if etag != "" && etagListMatches(string(inm), etag) {
			return fasthttp.StatusNotModified
		}
	} else if t, ok := httpDate(h.Peek("If-Modified-Since")); ok && !modified.After(t) {
		return fasthttp.StatusNotModified
	}
	return 0
}

// ifMatch evaluates If-Match's list against etag with the strong
// comparison RFC 9110 13.1.1 asks for; "*" matches the asset, which
// exists.
func ifMatch(list, etag string) bool {
	if strings.TrimSpace(list) == "*" {
		return true
	}
	for tag := range strings.SplitSeq(list, ",") {
		if strongMatch(strings.TrimSpace(tag), etag) {
			return true
		}
	}
	return false
}

// httpDate parses an HTTP-date (RFC 9110 5.6.7); ok is false when v is
// absent or not a date.
func httpDate(v []byte) (time.Time, bool) {
	if v == nil {
		return time.Time{}, false
	}
	t, err := http.ParseTime(strings.TrimSpace(string(v)))
	return t, err == nil
}

// tokenExpiry is the expiry of a token verifyDownload accepted.
func tokenExpiry(token string) time.Time {
	es, _, _ := strings.Cut(token, ".")
	exp, _ := parseInt(es)
	return time.Unix(exp, 0)
}

// strongMatch compares an entity tag strongly (RFC 9110 8.8.3.2): a weak
// tag matches nothing.
func strongMatch(tag, etag string) bool {
	return etag != "" && tag == etag && !strings.HasPrefix(tag, "W/")
}

// etagListMatches evaluates If-None-Match's list against etag with the
// weak comparison RFC 9110 13.1.2 asks for; "*" matches any.
func etagListMatches(list, etag string) bool {
	if strings.TrimSpace(list) == "*" {
		return true
	}
	for tag := range strings.SplitSeq(list, ",") {
		if strings.TrimPrefix(strings.TrimSpace(tag), "W/") == etag {
			return true
		}
	}
	return false
}

const octetStream = "application/octet-stream"

// downloadHeaders are the Content-Type and Content-Disposition of a's
// downloads, served by this server or set on a presigned URL alike.
func downloadHeaders(a sessionstore.Asset) pipeline.ResponseHeaders {
	return pipeline.ResponseHeaders{ContentType: servedType(a.ContentType), ContentDisposition: attachment(a.Filename)}
}

// servedType is the Content-Type a download is served with: the stored
// one for video/*, audio/* and application/octet-stream, anything else
// (text/html, image/svg+xml…) as application/octet-stream, which no
// browser renders as a document.
func servedType(ct string) string {
	if !validMediaType(ct) {
		return octetStream
	}
	mt, _, _ := mime.ParseMediaType(ct)
	if strings.HasPrefix(mt, "video/") || strings.HasPrefix(mt, "audio/") || mt == octetStream {
		return ct
	}
	return octetStream
}

// attachment is a Content-Disposition that saves the body as name (RFC
// 6266): an ASCII filename for old clients and, when name is not plain
// ASCII, the exact name as RFC 8187 filename*.
func attachment(name string) string {
	if name == "" {
		return "attachment"
	}
	// Controls and bidi overrides go before either form is made: browsers
	// prefer filename*, so a name cleaned only in filename would still
	// save "evil\u202egpj.exe" as what looks like a .jpg (RFC 6266 §4.3).
	name = strings.Map(safeNameRune, strings.ToValidUTF8(name, "\uFFFD"))
	var plain, ext strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c > ' ' && c < 0x7f && c != '"' && c != '\\' && c != '%' && c != '/' || c == ' ' {
			plain.WriteByte(c)
		} else if c < 0x80 || utf8.RuneStart(c) {
			plain.WriteByte('_')
		}
		if isAttrChar(c) {
			ext.WriteByte(c)
		} else {
			fmt.Fprintf(&ext, "%%%02X", c)
		}
	}
	v := `attachment; filename="` + plain.String() + `"`
	if plain.String() != name {
		v += "; filename*=UTF-8''" + ext.String()
	}
	return v
}

// safeNameRune maps the runes a saved file name must not carry to '_':
// C0 and C1 controls (CR, LF, NUL among them) and the bidirectional
// embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069),
// which can make a name display other than it is.
func safeNameRune(r rune) rune {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return '_'
	}
	return r
}

// isAttrChar reports whether c may appear unencoded in an RFC 8187
// ext-value.
func isAttrChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0
}
