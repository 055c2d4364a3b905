package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

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

// assetJSON renders a. A ready asset gets a download URL: the sink's own
// (S3 presigned) or, when it has none, one of this server, signed (rc is
// nil outside a request: then only with --public-url).
func (s *Server) assetJSON(ctx context.Context, rc *fasthttp.RequestCtx, a sessionstore.Asset) *assetJSON {
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
	u, err := s.pipe.Sink().DownloadURL(ctx, key, s.cfg.DownloadTTL, downloadHeaders(a))
	if err != nil {
		// The asset is still worth showing; the URL can be asked again.
		s.log.Warn("download url", "asset_id", a.ID, "err", err)
		return j
	}
	if u == "" && rc == nil && s.cfg.PublicURL == "" {
		return j // no request to take the host from (a webhook delivery)
	}
	if u == "" {
		u = s.baseURL(rc) + downloadPath + a.ID + "?token=" + s.signDownload(a.ID, time.Now().Add(s.cfg.DownloadTTL))
	}
	j.DownloadURL = u
	return j
}

// serveAsset serves GET /api/v1/assets/{id}.
func (s *Server) serveAsset(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, p *params) error {
	id, account := p.id, rq.account
	if !validID(id) {
		return errNotFound
	}
	a, err := s.store.Asset(ctx, id)
	if errors.Is(err, sessionstore.ErrNotFound) {
		return errNotFound
	}
	if err != nil {
		return fmt.Errorf("proxy: load asset: %w", err)
	}
	if a.Account != account || a.Deleted {
		return errNotFound
	}
	if gone, err := s.waitingGone(ctx, a); err != nil || gone {
		return cmp.Or(err, error(errNotFound))
	}
	j := s.assetJSON(ctx, rc, a)
	got, err := s.bytesReceived(ctx, a)
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
func (s *Server) bytesReceived(ctx context.Context, a sessionstore.Asset) (*int64, error) {
	switch a.State {
	case sessionstore.StateReady:
		return &a.SizeBytes, nil
	case sessionstore.StateUploading:
	default:
		return nil, nil
	}
	sess, err := s.store.Session(ctx, a.SessionID)
	switch {
	case errors.Is(err, sessionstore.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("proxy: load the asset's upload: %w", err)
	}
	return &sess.Offset, nil
}
