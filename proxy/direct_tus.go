package proxy

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// Refusals of a direct upload URL. None says whether another grant or
// upload exists: a wrong token and an unknown id are the same 403.
var (
	errDirectToken      = codeInvalidUploadToken.err()
	errDirectRevoked    = codeDirectUploadRevoked.err()
	errDirectExpired    = codeDirectUploadExpired.err()
	errDirectUsed       = codeDirectUploadUsed.err()
	errDirectNotCreated = codeNotFound.with(
		"no upload was created with this direct upload URL yet; POST to it first")
	errDirectType           = codeTypeNotAllowed.err()
	errDirectConcat         = codeConcatenationNotAllowed.err()
	errDirectLengthRequired = codeLengthRequired.err()
	errOriginNotAllowed     = codeOriginNotAllowed.err()
)

// grantAuth is the direct upload URL authenticator (authGrant): the
// token stands in for the API key. The request acts for the grant's
// account, on the grant's one upload only, under the grant's policy.
type grantAuth struct {
	store interface {
		DirectUpload(ctx context.Context, id string) (sessionstore.DirectUpload, error)
	}
	// origins are the server's --cors-origins (nil: any), for a grant
	// that names none.
	origins map[string]bool
}

// signIn loads the grant of id and checks the request's token.
func (g *grantAuth) signIn(ctx context.Context, rc *fasthttp.RequestCtx, id string) (*principal, error) {
	token := rc.QueryArgs().Peek("token")
	if !validID(id) || len(token) == 0 {
		return nil, errDirectToken
	}
	d, err := g.store.DirectUpload(ctx, id)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return nil, errDirectToken
	}
	if err != nil {
		return nil, fmt.Errorf("proxy: load direct upload: %w", err)
	}
	if !hmac.Equal(token, []byte(directToken(d))) {
		return nil, errDirectToken
	}
	return &principal{account: d.Account, policy: &policy{grant: d, origins: g.origins}}, nil
}

// policy is what a direct upload URL allows: the grant is the policy. Its
// methods, its origins (CORS), one creation of its type and size whose id
// is the grant's, claimed once (upload.Service.Claim), then that upload.
type policy struct {
	grant sessionstore.DirectUpload
	// origins are the server's, for a grant without allowed_origins.
	origins map[string]bool
}

// grantMethods are the methods of a direct upload URL, a 405's Allow.
// GET is answered too, with the asset, though it was never listed.
const grantMethods = "OPTIONS, POST, HEAD, PATCH, DELETE"

// originAllowed: the grant's allowed_origins when it has some, else the
// server's --cors-origins.
func (pol *policy) originAllowed(origin string) bool {
	if len(pol.grant.AllowedOrigins) > 0 {
		return slices.Contains(pol.grant.AllowedOrigins, strings.ToLower(origin))
	}
	return pol.origins == nil || pol.origins[origin]
}

// cors adds the CORS headers for an Origin the grant allows.
func (pol *policy) cors(rc *fasthttp.RequestCtx) {
	origin := string(rc.Request.Header.Peek("Origin"))
	if origin == "" {
		return
	}
	h := &rc.Response.Header
	h.Add("Vary", "Origin")
	if !pol.originAllowed(origin) {
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
}

// admit holds a request to the grant: its methods, its state and origin,
// and for a creation its metadata and length.
func (pol *policy) admit(rc *fasthttp.RequestCtx, rq *request) error {
	d := pol.grant
	switch rq.method {
	case fasthttp.MethodGet, fasthttp.MethodPost, fasthttp.MethodHead, fasthttp.MethodPatch, fasthttp.MethodDelete:
	default:
		rq.allow = grantMethods
		return errMethod
	}
	if d.Revoked {
		return errDirectRevoked
	}
	if origin := rc.Request.Header.Peek("Origin"); len(origin) > 0 && !pol.originAllowed(string(origin)) {
		return errOriginNotAllowed
	}
	switch rq.method {
	case fasthttp.MethodGet:
		return nil
	case fasthttp.MethodPost:
		// A used grant's POST is answered by the claim (a repeat claim);
		// its creation deadline no longer applies.
		if !d.Created && time.Now().After(d.ExpiresAt) {
			return errDirectExpired
		}
		return directCreation(&rc.Request.Header, d)
	}
	if !d.Created {
		return errDirectNotCreated
	}
	return nil
}

// grantCheck is the direct upload route's check: TUS's version, but on
// GET (the asset, for a page that holds only the URL).
func grantCheck(rc *fasthttp.RequestCtx, rq *request, p *params) error {
	rq.uploadID = p.id
	if rq.method != fasthttp.MethodGet && string(rc.Request.Header.Peek("Tus-Resumable")) != tusVersion {
		return errTusVersion
	}
	return nil
}

// grantOptions answers OPTIONS on a direct upload URL: TUS discovery and
// preflight, with or without a valid grant (only a grant's origins get
// the CORS headers).
func grantOptions(s *Server, rc *fasthttp.RequestCtx, _ *route, _ *params) {
	s.tusOptions(rc)
}

// serveGrant serves a request the grant admitted: GET is the grant's
// asset; the rest is TUS on the grant's one upload, whose URL is the
// grant's: one URL, one upload.
func (da *directAPI) serveGrant(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, p *params) error {
	d := rq.principal.claim()
	switch rq.method {
	case fasthttp.MethodGet:
		return da.assets.grantAsset(ctx, rc, *d)
	case fasthttp.MethodPost:
		if err := da.tus(ctx, rc, rq, &params{}); err != nil {
			return err
		}
		rc.Response.Header.Set("Location", da.url(rc, *d))
		return nil
	}
	return da.tus(ctx, rc, rq, &params{id: p.id})
}

// directCreation checks a creation against the grant and rewrites its
// Upload-Metadata to what the grant sets: its type (a client may name the
// same kind, not another), file name, content type and metadata win over
// the client's.
func directCreation(h *fasthttp.RequestHeader, d sessionstore.DirectUpload) error {
	if h.Peek("Upload-Concat") != nil {
		return errDirectConcat
	}
	md, err := parseMetadata(string(h.Peek("Upload-Metadata")))
	if err != nil {
		return errBadRequest(codeInvalidMetadata, err)
	}
	if md["type"] != "" {
		sh, err := md.shape()
		if err != nil {
			return err
		}
		if sh.Type != d.Type {
			return errDirectType
		}
	} else {
		md["type"] = d.Type
	}
	for k, v := range d.Metadata {
		if k != "type" {
			md[k] = v
		}
	}
	if d.Filename != "" {
		md["filename"] = d.Filename
	}
	if d.ContentType != "" {
		md["content_type"] = d.ContentType
	}
	h.Set("Upload-Metadata", md.encode())
	if d.MaxSize <= 0 {
		return nil
	}
	if h.Peek("Upload-Defer-Length") != nil {
		return errDirectLengthRequired
	}
	if n, err := parseInt(string(h.Peek("Upload-Length"))); err == nil && n > d.MaxSize {
		return codeUploadTooLarge.with(
			"Upload-Length is larger than this direct upload's max_size_bytes (" + maxSizeText(d.MaxSize) + ")")
	}
	return nil
}
