package proxy

import (
	"cmp"
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
	errDirectToken = errorf(fasthttp.StatusForbidden, "invalid_upload_token",
		"this direct upload URL is not valid (unknown, or its token was altered); ask the site for a new upload URL")
	errDirectRevoked = errorf(fasthttp.StatusForbidden, "direct_upload_revoked",
		"this direct upload URL was revoked by its creator; ask the site for a new upload URL")
	errDirectExpired = errorf(fasthttp.StatusGone, "direct_upload_expired",
		"this direct upload URL expired before an upload was created with it; ask the site for a new upload URL")
	errDirectUsed = errorf(fasthttp.StatusForbidden, "direct_upload_used",
		"this direct upload URL already created its upload; resume that upload with HEAD and PATCH on the same URL")
	errDirectNotCreated = errorf(fasthttp.StatusNotFound, "not_found",
		"no upload was created with this direct upload URL yet; POST to it first")
	errDirectType = errorf(fasthttp.StatusForbidden, "type_not_allowed",
		`Upload-Metadata "type" differs from the type this direct upload was made for`)
	errDirectConcat = errorf(fasthttp.StatusForbidden, "concatenation_not_allowed",
		"a direct upload URL creates one upload: Upload-Concat (tus-js-client's parallelUploads) is not available")
	errDirectLengthRequired = errorf(fasthttp.StatusBadRequest, "length_required",
		"this direct upload has a size limit: send Upload-Length (Upload-Defer-Length is not available)")
	errOriginNotAllowed = errorf(fasthttp.StatusForbidden, "origin_not_allowed",
		"this direct upload URL does not accept requests from this page's origin")
)

// directTus serves the TUS requests of a direct upload URL. The token
// stands in for the API key: the request acts for the grant's account, on
// the grant's one upload only.
func (s *Server) directTus(rc *fasthttp.RequestCtx, rq *request, id string) {
	rc.Response.Header.Set("Tus-Resumable", tusVersion)
	method := tusMethod(rc)
	rq.method = method
	rq.bodyRoute = method == fasthttp.MethodPost || method == fasthttp.MethodPatch
	ctx, cancel := s.requestContext(rq)
	defer cancel()
	d, err := s.directGrant(ctx, rc, id)
	if err == nil {
		s.directCORS(rc, d)
	} else {
		s.cors(rc)
	}
	if method == fasthttp.MethodOptions {
		// Discovery and preflight answer without a valid grant too, but
		// only a grant's origins get the CORS headers.
		s.tusOptions(rc)
		return
	}
	switch {
	case err != nil:
	case method == fasthttp.MethodGet:
		// The asset of the grant's own upload, for a page that holds only
		// the URL (the upload page of GET / shows it once uploaded).
		err = s.directAsset(ctx, rc, rq, d)
	default:
		err = s.directServe(ctx, rc, rq, method, d)
	}
	if err != nil {
		s.fail(rc, rq, err)
	}
}

// directServe serves a TUS request on grant d's URL.
func (s *Server) directServe(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, method string, d sessionstore.DirectUpload) error {
	if err := s.directAdmit(rc, rq, method, d); err != nil {
		return err
	}
	if method != fasthttp.MethodPost {
		return s.tusServe(ctx, rc, rq, method, d.ID)
	}
	rq.direct = &d
	if err := s.tusServe(ctx, rc, rq, method, ""); err != nil {
		return err
	}
	// The upload's URL is the grant's URL: one URL, one upload.
	rc.Response.Header.Set("Location", s.directURL(rc, d))
	return nil
}

// directAsset serves GET on a direct upload URL: the asset as GET
// /api/v1/assets/{id} shows it (waiting before the creation).
func (s *Server) directAsset(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, d sessionstore.DirectUpload) error {
	rq.account, rq.uploadID = d.Account, d.ID
	if d.Revoked {
		return errDirectRevoked
	}
	if origin := rc.Request.Header.Peek("Origin"); len(origin) > 0 && !s.directOriginAllowed(d, string(origin)) {
		return errOriginNotAllowed
	}
	a, err := s.store.Asset(ctx, d.ID)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return errNotFound
	}
	if err != nil {
		return fmt.Errorf("proxy: load asset: %w", err)
	}
	if gone, err := s.waitingGone(ctx, a); err != nil || gone {
		return cmp.Or(err, error(errNotFound))
	}
	rc.Response.Header.Set("Cache-Control", "no-store")
	writeJSON(rc, fasthttp.StatusOK, s.assetJSON(ctx, rc, a))
	return nil
}

// directGrant loads the grant of id and checks the request's token.
func (s *Server) directGrant(ctx context.Context, rc *fasthttp.RequestCtx, id string) (sessionstore.DirectUpload, error) {
	token := rc.QueryArgs().Peek("token")
	if !validID(id) || len(token) == 0 {
		return sessionstore.DirectUpload{}, errDirectToken
	}
	d, err := s.store.DirectUpload(ctx, id)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return d, errDirectToken
	}
	if err != nil {
		return d, fmt.Errorf("proxy: load direct upload: %w", err)
	}
	if !hmac.Equal(token, []byte(directToken(d))) {
		return d, errDirectToken
	}
	return d, nil
}

// directOriginAllowed: the grant's allowed_origins when it has some, else
// the server's --cors-origins.
func (s *Server) directOriginAllowed(d sessionstore.DirectUpload, origin string) bool {
	if len(d.AllowedOrigins) > 0 {
		return slices.Contains(d.AllowedOrigins, strings.ToLower(origin))
	}
	return s.origins == nil || s.origins[origin]
}

// directCORS adds the CORS headers for an Origin the grant allows.
func (s *Server) directCORS(rc *fasthttp.RequestCtx, d sessionstore.DirectUpload) {
	origin := string(rc.Request.Header.Peek("Origin"))
	if origin == "" {
		return
	}
	h := &rc.Response.Header
	h.Add("Vary", "Origin")
	if !s.directOriginAllowed(d, origin) {
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
}

// directAdmit is tusAdmit for a grant: the request's method, the grant's
// state and origin, and for a creation its metadata and length.
func (s *Server) directAdmit(rc *fasthttp.RequestCtx, rq *request, method string, d sessionstore.DirectUpload) error {
	if string(rc.Request.Header.Peek("Tus-Resumable")) != tusVersion {
		return errTusVersion
	}
	switch method {
	case fasthttp.MethodPost, fasthttp.MethodHead, fasthttp.MethodPatch, fasthttp.MethodDelete:
	default:
		rq.allow = "OPTIONS, POST, HEAD, PATCH, DELETE"
		return errMethod
	}
	rq.account, rq.uploadID = d.Account, d.ID
	if d.Revoked {
		return errDirectRevoked
	}
	if origin := rc.Request.Header.Peek("Origin"); len(origin) > 0 && !s.directOriginAllowed(d, string(origin)) {
		return errOriginNotAllowed
	}
	if method != fasthttp.MethodPost {
		if !d.Created {
			return errDirectNotCreated
		}
		return nil
	}
	// A used grant's POST is answered by claimUpload (a repeat claim); its
	// creation deadline no longer applies.
	if !d.Created && time.Now().After(d.ExpiresAt) {
		return errDirectExpired
	}
	return directCreation(&rc.Request.Header, d)
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
		return errBadRequest("invalid_metadata", err)
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
		return errorf(fasthttp.StatusRequestEntityTooLarge, "upload_too_large",
			"Upload-Length is larger than this direct upload's max_size_bytes ("+maxSizeText(d.MaxSize)+")")
	}
	return nil
}

// claimUpload creates the upload of grant d (upload.Service.Claim: the
// grant is claimed first and the storage made after, so that a creation
// that lost the race never touches the winner's storage).
func (s *Server) claimUpload(ctx context.Context, sess *sessionstore.Session, asset *sessionstore.Asset, d *sessionstore.DirectUpload) error {
	return httpError(s.svc.Claim(ctx, sess, asset, d))
}
