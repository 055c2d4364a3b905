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

// directTus serves the TUS requests of a direct upload URL. The token
// stands in for the API key: the request acts for the grant's account, on
// the grant's one upload only.
func (s *Server) directTus(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, p *params) error {
	d, err := s.directGrant(ctx, rc, p.id)
	if err == nil {
		s.directCORS(rc, d)
	} else {
		s.cors(rc)
	}
	if rq.method == fasthttp.MethodOptions {
		// Discovery and preflight answer without a valid grant too, but
		// only a grant's origins get the CORS headers.
		s.tusOptions(rc)
		return nil
	}
	switch {
	case err != nil:
		return err
	case rq.method == fasthttp.MethodGet:
		// The asset of the grant's own upload, for a page that holds only
		// the URL (the upload page of GET / shows it once uploaded).
		return s.directAsset(ctx, rc, rq, d)
	}
	return s.directServe(ctx, rc, rq, d)
}

// directServe serves a TUS request on grant d's URL.
func (s *Server) directServe(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, d sessionstore.DirectUpload) error {
	if err := s.directAdmit(rc, rq, rq.method, d); err != nil {
		return err
	}
	release, err := s.holdStream(rc, rq)
	if err != nil {
		return err
	}
	defer release()
	if rq.method != fasthttp.MethodPost {
		return s.tusServe(ctx, rc, rq, &params{id: d.ID})
	}
	rq.direct = &d
	if err := s.tusServe(ctx, rc, rq, &params{}); err != nil {
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

// claimUpload creates the upload of grant d (upload.Service.Claim: the
// grant is claimed first and the storage made after, so that a creation
// that lost the race never touches the winner's storage).
func (s *Server) claimUpload(ctx context.Context, sess *sessionstore.Session, asset *sessionstore.Asset, d *sessionstore.DirectUpload) error {
	return httpError(s.svc.Claim(ctx, sess, asset, d))
}
