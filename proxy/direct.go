package proxy

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// Direct uploads: a backend that holds an API key mints a URL
// for one upload; a browser or app that holds no key uploads to it with
// any TUS client. The URL is
//
//	{base}/api/v1/direct-uploads/{id}/tus?token={token}
//
// and is at once the TUS creation URL and, after the creation, the upload
// URL (Location) for HEAD, PATCH and DELETE: one URL, one upload.

// Limits of a direct upload's request.
const (
	maxDirectBody     = 64 << 10
	maxDirectExpiry   = 7 * 24 * time.Hour
	defaultDirectTTL  = time.Hour
	maxDirectOrigins  = 32
	maxDirectFilename = 1024
)

// directRequest is the JSON body of POST /api/v1/direct-uploads.
type directRequest struct {
	Type           string            `json:"type"`
	MaxSizeBytes   *int64            `json:"max_size_bytes"`
	ExpiresIn      *int64            `json:"expires_in"`
	Filename       string            `json:"filename"`
	ContentType    string            `json:"content_type"`
	Metadata       map[string]string `json:"metadata"`
	AllowedOrigins []string          `json:"allowed_origins"`
}

// directJSON is a direct upload as the API shows it.
type directJSON struct {
	ID             string     `json:"id"`
	UploadURL      string     `json:"upload_url"`
	ExpiresAt      string     `json:"expires_at"`
	MaxSizeBytes   *int64     `json:"max_size_bytes"`
	AllowedOrigins []string   `json:"allowed_origins"`
	Asset          *assetJSON `json:"asset"`
}

func errInvalidDirect(msg string) *Error {
	return codeInvalidDirectUpload.with(msg)
}

// directAPI is the direct upload API: it mints and revokes grants (the
// grant's URL signs in with grantAuth, direct_tus.go).
type directAPI struct {
	store  sessionstore.DirectUploads
	assets *assetsAPI
	// body reads a request's body; base is the server's URL as the
	// request names it.
	body func(*fasthttp.RequestCtx, *request) *bodyReader
	base func(*fasthttp.RequestCtx) string
	// tus serves a TUS request of the upload endpoint.
	tus func(context.Context, *fasthttp.RequestCtx, *request, *params) error
}

// create serves POST /api/v1/direct-uploads.
func (da *directAPI) create(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, _ *params) error {
	account := rq.account
	if cl := rc.Request.Header.ContentLength(); cl > maxDirectBody {
		return codeBodyTooLarge.err()
	}
	raw, err := io.ReadAll(io.LimitReader(da.body(rc, rq), maxDirectBody+1))
	if err != nil {
		return fmt.Errorf("proxy: read direct upload request: %w: %w", errBodyRead, err)
	}
	if len(raw) > maxDirectBody {
		return codeBodyTooLarge.err()
	}
	var in directRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return errInvalidDirect("the body must be a JSON object with type, expires_in and the optional max_size_bytes, filename, content_type, metadata, allowed_origins: " + err.Error())
	}
	now := time.Now().UTC()
	d, err := in.grant(now)
	if err != nil {
		return err
	}
	d.ID, d.Account = apikey.NewID(), account
	d.Secret = make([]byte, 32)
	rand.Read(d.Secret)
	rq.uploadID = d.ID
	a := sessionstore.Asset{
		ID: d.ID, Account: account, SessionID: d.ID, Type: d.Type, State: sessionstore.StateWaiting, SizeBytes: -1,
		ContentType: d.ContentType, Filename: d.Filename, Metadata: d.Metadata, StorageKey: storageKey(d.ID), CreatedAt: now,
	}
	if err := da.store.CreateDirectUpload(ctx, d, a); err != nil {
		return fmt.Errorf("proxy: create direct upload: %w", err)
	}
	out := directJSON{
		ID: d.ID, UploadURL: da.url(rc, d), ExpiresAt: d.ExpiresAt.Format(time.RFC3339),
		AllowedOrigins: d.AllowedOrigins, Asset: da.assets.render(ctx, rc, a),
	}
	if out.AllowedOrigins == nil {
		out.AllowedOrigins = []string{}
	}
	if d.MaxSize > 0 {
		out.MaxSizeBytes = &d.MaxSize
	}
	rc.Response.Header.Set("Cache-Control", "no-store")
	writeJSON(rc, fasthttp.StatusCreated, &out)
	return nil
}

// grant checks a request and makes the direct upload it asks for (without
// id, account and secret).
func (in directRequest) grant(now time.Time) (sessionstore.DirectUpload, error) {
	d := sessionstore.DirectUpload{Filename: in.Filename, ContentType: in.ContentType, CreatedAt: now}
	switch t := strings.ToLower(strings.TrimSpace(in.Type)); t {
	case "video", "audio":
		d.Type = t
	default:
		return d, errInvalidDirect(`"type" must be "video" or "audio"`)
	}
	if in.MaxSizeBytes != nil {
		if *in.MaxSizeBytes < 1 || *in.MaxSizeBytes > pipeline.MaxUploadLength {
			return d, errInvalidDirect(fmt.Sprintf(`"max_size_bytes" must be between 1 and %d (50 GiB)`, pipeline.MaxUploadLength))
		}
		d.MaxSize = *in.MaxSizeBytes
	}
	ttl, err := directTTL(in.ExpiresIn)
	if err != nil {
		return d, err
	}
	d.ExpiresAt = now.Add(ttl)
	if len(d.Filename) > maxDirectFilename || strings.ContainsFunc(d.Filename, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return d, errInvalidDirect(`"filename" must be at most 1024 bytes without control characters`)
	}
	if d.ContentType != "" && !validMediaType(d.ContentType) {
		return d, errInvalidDirect(`"content_type" must be a media type such as "video/mp4"`)
	}
	for k := range in.Metadata {
		if !validMetadataKey(k) {
			return d, errInvalidDirect(fmt.Sprintf("metadata key %q is not valid (printable ASCII, no space or comma)", k))
		}
	}
	d.Metadata = in.Metadata
	origins, err := directOrigins(in.AllowedOrigins)
	if err != nil {
		return d, err
	}
	d.AllowedOrigins = origins
	return d, nil
}

// directTTL is how long a direct upload URL works: expiresIn seconds,
// checked, or the default when nil.
func directTTL(expiresIn *int64) (time.Duration, error) {
	if expiresIn == nil {
		return defaultDirectTTL, nil
	}
	if *expiresIn < 1 || *expiresIn > int64(maxDirectExpiry/time.Second) {
		return 0, errInvalidDirect(fmt.Sprintf(`"expires_in" must be between 1 and %d seconds (7 days)`, int64(maxDirectExpiry/time.Second)))
	}
	return time.Duration(*expiresIn) * time.Second, nil
}

// directOrigins checks a request's allowed origins and returns them
// normalized (nil when there are none).
func directOrigins(in []string) ([]string, error) {
	if len(in) > maxDirectOrigins {
		return nil, errInvalidDirect(fmt.Sprintf(`"allowed_origins" takes at most %d origins`, maxDirectOrigins))
	}
	var out []string
	for _, o := range in {
		norm, ok := normalizeOrigin(o)
		if !ok {
			return nil, errInvalidDirect(fmt.Sprintf(`allowed origin %q is not an origin such as "https://app.example.com"`, o))
		}
		out = append(out, norm)
	}
	return out, nil
}

// normalizeOrigin returns o as browsers send it in Origin (scheme://host
// [:port], lower case, no path).
func normalizeOrigin(o string) (string, bool) {
	u, err := url.Parse(strings.TrimSpace(o))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || !validHost(u.Host) {
		return "", false
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), true
}

// revoke serves DELETE /api/v1/direct-uploads/{id}: the URL stops
// working at once; an upload it already created stays (DELETE it with the
// key on the TUS endpoint). Idempotent; another account's id is a 404.
func (da *directAPI) revoke(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, p *params) error {
	id, account := p.id, rq.account
	rq.uploadID = id
	if !validID(id) {
		return errNotFound
	}
	d, err := da.store.DirectUpload(ctx, id)
	if err == nil && d.Account != account {
		err = sessionstore.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("proxy: load direct upload: %w", err)
	}
	if _, err := da.store.RevokeDirectUpload(ctx, id); err != nil {
		return fmt.Errorf("proxy: revoke direct upload: %w", err)
	}
	rc.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

// directToken is the URL's token: an HMAC-SHA256, under the grant's own
// secret, of everything the grant binds (upload id, account, type, size
// limit, expiry). Any change to one of them, or another grant's token,
// fails the check.
func directToken(d sessionstore.DirectUpload) string {
	m := hmac.New(sha256.New, d.Secret)
	fmt.Fprintf(m, "roughy direct upload v1\n%s\n%s\n%s\n%d\n%d", d.ID, d.Account, d.Type, d.MaxSize, d.ExpiresAt.UnixNano())
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// url is the grant's upload URL.
func (da *directAPI) url(rc *fasthttp.RequestCtx, d sessionstore.DirectUpload) string {
	return da.base(rc) + directPath + "/" + d.ID + "/tus?token=" + directToken(d)
}

// maxSizeText is a direct upload's size limit for messages.
func maxSizeText(n int64) string { return strconv.FormatInt(n, 10) + " bytes" }
