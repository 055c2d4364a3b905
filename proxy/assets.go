package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// assetJSON is an asset as GET /api/v1/assets/{id} shows it (SPEC). Fields
// that are not known yet are null; sha256 and download_url appear once the
// asset is ready.
type assetJSON struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	State     string `json:"state"`
	SizeBytes *int64 `json:"size_bytes"`
	// BytesReceived is how many bytes of the upload are stored (its
	// committed offset; the size once ready): progress without HEAD,
	// which takes an upload over from the request writing it. Only GET
	// /api/v1/assets/{id} sets it.
	BytesReceived   *int64  `json:"bytes_received,omitempty"`
	ContentType     *string `json:"content_type"`
	Filename        *string `json:"filename"`
	DurationSeconds *string `json:"duration_seconds"`
	SHA256          string  `json:"sha256,omitempty"`
	CreatedAt       string  `json:"created_at"`
	DownloadURL     string  `json:"download_url,omitempty"`
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// assetsAPI serves the assets: GET /api/v1/assets/{id}, a direct upload
// URL's asset, and the signed downloads of this server (download.go).
type assetsAPI struct {
	store interface {
		sessionstore.Assets
		Session(ctx context.Context, id string) (sessionstore.Session, error)
		DirectUpload(ctx context.Context, id string) (sessionstore.DirectUpload, error)
	}
	pipe *pipeline.Pipeline
	// sign is the download URLs' HMAC key; ttl how long one is valid.
	sign []byte
	ttl  time.Duration
	// public is --public-url; base the URL of the server as a request
	// names it (the public URL when set).
	public string
	base   func(*fasthttp.RequestCtx) string
	log    *slog.Logger
}

// assetJSON renders a (assetsAPI.render).
func (s *Server) assetJSON(ctx context.Context, rc *fasthttp.RequestCtx, a sessionstore.Asset) *assetJSON {
	return s.assets.render(ctx, rc, a)
}

// render renders a. A ready asset gets a download URL: the sink's own
// (S3 presigned) or, when it has none, one of this server, signed (rc is
// nil outside a request: then only with --public-url).
func (as *assetsAPI) render(ctx context.Context, rc *fasthttp.RequestCtx, a sessionstore.Asset) *assetJSON {
	j := &assetJSON{
		ID: a.ID, Type: a.Type, State: a.State,
		ContentType: nullable(a.ContentType), Filename: nullable(a.Filename),
		DurationSeconds: nullable(a.DurationSeconds),
		CreatedAt:       a.CreatedAt.UTC().Format(time.RFC3339),
	}
	if a.SizeBytes >= 0 {
		size := a.SizeBytes
		j.SizeBytes = &size
	}
	if a.State != sessionstore.StateReady {
		return j
	}
	j.SHA256 = a.SHA256
	key := a.StorageKey
	if key == "" {
		key = storageKey(a.ID)
	}
	u, err := as.pipe.Sink().DownloadURL(ctx, key, as.ttl, downloadHeaders(a))
	if err != nil {
		// The asset is still worth showing; the URL can be asked again.
		as.log.Warn("download url", "asset_id", a.ID, "err", err)
		return j
	}
	if u == "" && rc == nil && as.public == "" {
		return j // no request to take the host from (a webhook delivery)
	}
	if u == "" {
		u = as.base(rc) + downloadPath + a.ID + "?token=" + as.signDownload(a.ID, time.Now().Add(as.ttl))
	}
	j.DownloadURL = u
	return j
}

// serve serves GET /api/v1/assets/{id}.
func (as *assetsAPI) serve(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, p *params) error {
	id, account := p.id, rq.account
	if !validID(id) {
		return errNotFound
	}
	a, err := as.store.Asset(ctx, id)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return errNotFound
	}
	if err != nil {
		return fmt.Errorf("proxy: load asset: %w", err)
	}
	if a.Account != account || a.Deleted {
		return errNotFound
	}
	if gone, err := as.waitingGone(ctx, a); err != nil || gone {
		return cmp.Or(err, error(errNotFound))
	}
	j := as.render(ctx, rc, a)
	got, err := as.bytesReceived(ctx, a)
	if err != nil {
		return err
	}
	j.BytesReceived = got
	rc.Response.Header.Set("Cache-Control", "no-store")
	writeJSON(rc, fasthttp.StatusOK, j)
	return nil
}

// bytesReceived is how many bytes of a's upload are stored: the size of a
// ready asset, else its session's committed offset (a read, never a
// takeover: watching progress must not stall the upload). nil when there
// is no session to tell (a direct upload's asset waiting for its
// creation, or one deleted between the two reads).
func (as *assetsAPI) bytesReceived(ctx context.Context, a sessionstore.Asset) (*int64, error) {
	switch a.State {
	case sessionstore.StateReady:
		return &a.SizeBytes, nil
	case sessionstore.StateUploading:
	default:
		return nil, nil
	}
	sess, err := as.store.Session(ctx, a.SessionID)
	switch {
	case errors.Is(err, sessionstore.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("proxy: load the asset's upload: %w", err)
	}
	return &sess.Offset, nil
}

// grantAsset serves GET on a direct upload URL (its grant admitted): the
// asset as GET /api/v1/assets/{id} shows it (waiting before the
// creation).
func (as *assetsAPI) grantAsset(ctx context.Context, rc *fasthttp.RequestCtx, d sessionstore.DirectUpload) error {
	a, err := as.store.Asset(ctx, d.ID)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return errNotFound
	}
	if err != nil {
		return fmt.Errorf("proxy: load asset: %w", err)
	}
	if gone, err := as.waitingGone(ctx, a); err != nil || gone {
		return cmp.Or(err, error(errNotFound))
	}
	rc.Response.Header.Set("Cache-Control", "no-store")
	writeJSON(rc, fasthttp.StatusOK, as.render(ctx, rc, a))
	return nil
}

// waitingGone reports whether a waiting asset's grant can no longer create
// its upload (expired): such an asset is shown as gone, like an expired
// upload's.
func (as *assetsAPI) waitingGone(ctx context.Context, a sessionstore.Asset) (bool, error) {
	if a.State != sessionstore.StateWaiting {
		return false, nil
	}
	d, err := as.store.DirectUpload(ctx, a.ID)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("proxy: load direct upload: %w", err)
	}
	return d.Revoked || (!d.Created && time.Now().After(d.ExpiresAt)), nil
}
