package proxy

import (
	"encoding/base64"
	"fmt"
	"maps"
	"mime"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/roughy/ingest/pipeline"
	"github.com/valyala/fasthttp"
)

// TUS protocol constants.
const (
	tusVersion    = "1.0.0"
	tusExtensions = "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration,concatenation"
	tusMaxSize    = "53687091200"
	offsetType    = "application/offset+octet-stream"
	httpTime      = "Mon, 02 Jan 2006 15:04:05 GMT"
)

// parseInt parses a non-negative decimal header value (Upload-Length,
// Upload-Offset): digits only, no sign, no overflow.
func parseInt(v string) (int64, error) {
	if v == "" || len(v) > 19 {
		return 0, fmt.Errorf("proxy: %q is not a non-negative integer", v)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, fmt.Errorf("proxy: %q is not a non-negative integer", v)
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proxy: %q: %w", v, err)
	}
	return n, nil
}

// single returns the value of the request header name and whether it was
// sent. A header sent more than once with different values is a 400 with
// code: fasthttp's Peek would pick the first, and the client may have
// meant another (two different Content-Length values are refused alike).
func single(h *fasthttp.RequestHeader, name string, code catalogueCode) (string, bool, error) {
	vs := h.PeekAll(name)
	if len(vs) == 0 {
		return "", false, nil
	}
	for _, v := range vs[1:] {
		if string(v) != string(vs[0]) {
			return "", true, code.with(name + " is sent more than once with different values")
		}
	}
	return string(vs[0]), true, nil
}

// parseChecksumHeader reads a request's Upload-Checksum, nil when absent.
func parseChecksumHeader(h *fasthttp.RequestHeader) (*pipeline.Checksum, error) {
	v, ok, err := single(h, "Upload-Checksum", codeInvalidChecksum)
	if err != nil || !ok {
		return nil, err
	}
	sum, err := parseChecksum(v)
	if err != nil {
		return nil, errBadRequest(codeInvalidChecksum, err)
	}
	return sum, nil
}

// metadata is a decoded Upload-Metadata header.
type metadata map[string]string

// parseMetadata decodes an Upload-Metadata header: comma-separated pairs of
// a key and an optional base64 value. Keys are printable ASCII without
// space or comma; a duplicate key or bad base64 is an error. Empty elements
// (tuspy sends an empty header) are skipped.
func parseMetadata(h string) (metadata, error) {
	md := metadata{}
	// Values decode here first, so that each costs one allocation (its
	// string): every write of an upload parses its stored metadata
	// (uploadOf).
	var buf [256]byte
	for pair := range strings.SplitSeq(h, ",") {
		pair = strings.Trim(pair, " \t")
		if pair == "" {
			continue
		}
		key, val, hasVal := strings.Cut(pair, " ")
		if !validMetadataKey(key) {
			return nil, fmt.Errorf("proxy: metadata key %q is not valid", key)
		}
		if _, dup := md[key]; dup {
			return nil, fmt.Errorf("proxy: metadata key %q appears twice", key)
		}
		val = strings.Trim(val, " \t")
		if !hasVal || val == "" {
			md[key] = ""
			continue
		}
		dec, err := decodeBase64(buf[:0], val)
		if err != nil {
			return nil, fmt.Errorf("proxy: metadata %q: bad base64: %w", key, err)
		}
		md[key] = string(dec)
	}
	return md, nil
}

// decodeBase64 appends v decoded to dst; it accepts standard base64,
// padded or not (some clients strip the padding).
func decodeBase64(dst []byte, v string) ([]byte, error) {
	if strings.HasSuffix(v, "=") || len(v)%4 == 0 {
		return base64.StdEncoding.Strict().AppendDecode(dst, []byte(v))
	}
	return base64.RawStdEncoding.Strict().AppendDecode(dst, []byte(v))
}

func validMetadataKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f || c == ',' {
			return false
		}
	}
	return true
}

// encode is the canonical Upload-Metadata form of md (keys sorted).
func (md metadata) encode() string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(md)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		if v := md[k]; v != "" {
			b.WriteByte(' ')
			b.WriteString(base64.StdEncoding.EncodeToString([]byte(v)))
		}
	}
	return b.String()
}

// assetShape is what an upload's metadata says about its asset.
type assetShape struct {
	Type        string // "video" or "audio"
	ContentType string
	Filename    string
}

// shape derives the asset's type, content type and file name. `type` is
// "video" or "audio", or a MIME type (Uppy sends the file's MIME type as
// `type`) whose top level gives it. content_type falls back to a MIME
// `type`, then Uppy's `filetype`; filename falls back to Uppy's `name`.
func (md metadata) shape() (assetShape, error) {
	var sh assetShape
	t := strings.ToLower(strings.TrimSpace(md["type"]))
	switch {
	case t == "":
		return sh, codeInvalidMetadata.err()
	case t == "video" || t == "audio":
		sh.Type = t
	case strings.HasPrefix(t, "video/"):
		sh.Type, sh.ContentType = "video", md["type"]
	case strings.HasPrefix(t, "audio/"):
		sh.Type, sh.ContentType = "audio", md["type"]
	default:
		return sh, codeInvalidMetadata.with(`Upload-Metadata "type" must be "video" or "audio"`)
	}
	if ct := md["content_type"]; ct != "" {
		sh.ContentType = ct
	} else if sh.ContentType == "" {
		sh.ContentType = md["filetype"]
	}
	if sh.ContentType != "" && !validMediaType(sh.ContentType) {
		// It becomes the stored object's Content-Type and a download's
		// (CR/LF were stored as they came).
		return assetShape{}, codeInvalidMetadata.with(
			`Upload-Metadata "content_type" must be a media type such as "video/mp4"`)
	}
	sh.Filename = md["filename"]
	if sh.Filename == "" {
		sh.Filename = md["name"]
	}
	return sh, nil
}

// maxMediaType bounds a stored content_type; real ones are far shorter.
const maxMediaType = 255

// validMediaType reports whether ct is a syntactically valid media type
// ("type/subtype", parameters allowed) of printable ASCII.
func validMediaType(ct string) bool {
	if len(ct) > maxMediaType {
		return false
	}
	for i := 0; i < len(ct); i++ {
		if c := ct[i]; c < ' ' || c >= 0x7f {
			return false
		}
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && strings.Contains(mt, "/")
}

// parseChecksum parses Upload-Checksum: "<algorithm> <base64 digest>". The
// algorithm must be supported and the digest of its length.
func parseChecksum(h string) (*pipeline.Checksum, error) {
	alg, sum, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok {
		return nil, fmt.Errorf("proxy: Upload-Checksum %q: want \"<algorithm> <base64>\"", h)
	}
	alg = strings.ToLower(alg)
	size, known := digestSizes[alg]
	if !known || !pipeline.CheckAlgorithm(alg) {
		return nil, fmt.Errorf("proxy: Upload-Checksum algorithm %q is not supported", alg)
	}
	dec, err := base64.StdEncoding.Strict().DecodeString(strings.TrimSpace(sum))
	if err != nil {
		return nil, fmt.Errorf("proxy: Upload-Checksum digest: %w", err)
	}
	if len(dec) != size {
		return nil, fmt.Errorf("proxy: Upload-Checksum %s digest has %d bytes, want %d", alg, len(dec), size)
	}
	return &pipeline.Checksum{Algorithm: alg, Sum: dec}, nil
}

var digestSizes = map[string]int{"sha256": 32, "sha1": 20, "md5": 16}

// formatChecksum is the header form of c.
func formatChecksum(c *pipeline.Checksum) string {
	return c.Algorithm + " " + base64.StdEncoding.EncodeToString(c.Sum)
}

// concat is a parsed Upload-Concat header.
type concat struct {
	Partial bool
	// Final lists the session ids of the partials, in order.
	Final []string
	// Raw is the header as received (trimmed), which HEAD of a final
	// upload echoes.
	Raw string
}

// parseConcat parses Upload-Concat: "partial", or "final;" followed by
// space-separated upload URLs (absolute, or paths) of this endpoint.
func parseConcat(h string) (concat, error) {
	h = strings.TrimSpace(h)
	if h == "partial" {
		return concat{Partial: true}, nil
	}
	rest, ok := strings.CutPrefix(h, "final;")
	if !ok {
		return concat{}, fmt.Errorf("proxy: Upload-Concat %q: want \"partial\" or \"final;<urls>\"", h)
	}
	c := concat{Raw: h}
	for u := range strings.FieldsSeq(rest) {
		id, err := uploadIDFromURL(u)
		if err != nil {
			return concat{}, err
		}
		c.Final = append(c.Final, id)
	}
	if len(c.Final) == 0 {
		return concat{}, fmt.Errorf("proxy: Upload-Concat final lists no uploads")
	}
	return c, nil
}

// uploadIDFromURL extracts the session id of an upload URL of this endpoint.
func uploadIDFromURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("proxy: Upload-Concat url %q: %w", raw, err)
	}
	id, ok := strings.CutPrefix(u.Path, uploadsPath+"/")
	if !ok || !validID(id) {
		return "", fmt.Errorf("proxy: Upload-Concat url %q is not an upload of this server", raw)
	}
	return id, nil
}

// format is the header form of c with upload paths.
func (c concat) format() string {
	if c.Partial {
		return "partial"
	}
	var b strings.Builder
	b.WriteString("final;")
	for i, id := range c.Final {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(uploadsPath + "/" + id)
	}
	return b.String()
}

// validID reports whether id can be a session or asset id (UUIDs, and
// nothing that could escape a storage key or a path).
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// baseURL is the public base URL for Location and download_url:
// --public-url, else X-Forwarded-Proto/Host, else the request's Host.
func (s *Server) baseURL(ctx *fasthttp.RequestCtx) string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	scheme := "http"
	if ctx.IsTLS() {
		scheme = "https"
	}
	if p := firstValue(ctx.Request.Header.Peek("X-Forwarded-Proto")); p == "http" || p == "https" {
		scheme = p
	}
	host := firstValue(ctx.Request.Header.Peek("X-Forwarded-Host"))
	if host == "" || !validHost(host) {
		host = string(ctx.Host())
	}
	return scheme + "://" + host
}

func firstValue(v []byte) string {
	first, _, _ := strings.Cut(string(v), ",")
	return strings.ToLower(strings.TrimSpace(first))
}

func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == '?' || c == '#' || c == '@' || c == '\\' {
			return false
		}
	}
	return true
}
