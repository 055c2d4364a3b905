package proxy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// createResponse is the JSON body of a 201.
type createResponse struct {
	SessionID string     `json:"session_id"`
	Asset     *assetJSON `json:"asset"`
}

func errBadRequest(code string, err error) *Error {
	return errorf(fasthttp.StatusBadRequest, code, strings.TrimPrefix(err.Error(), "proxy: "))
}

// parseLength reads Upload-Length / Upload-Defer-Length of a creation:
// exactly one of them, a length within 50 GiB, or a deferral of "1".
// It returns -1 for a deferred length.
func parseLength(h *fasthttp.RequestHeader) (int64, error) {
	lv, hasLength, err := single(h, "Upload-Length", "invalid_length")
	if err != nil {
		return 0, err
	}
	dv := h.Peek("Upload-Defer-Length")
	switch {
	case hasLength && dv != nil:
		return 0, errorf(fasthttp.StatusBadRequest, "invalid_length", "send Upload-Length or Upload-Defer-Length, not both")
	case !hasLength && dv == nil:
		return 0, errorf(fasthttp.StatusBadRequest, "invalid_length", "Upload-Length or Upload-Defer-Length: 1 is required")
	case dv != nil:
		if string(dv) != "1" {
			return 0, errorf(fasthttp.StatusBadRequest, "invalid_length", "Upload-Defer-Length must be 1")
		}
		return -1, nil
	}
	n, err := parseInt(lv)
	if err != nil {
		return 0, errorf(fasthttp.StatusBadRequest, "invalid_length", "Upload-Length must be a non-negative integer")
	}
	if n > pipeline.MaxUploadLength {
		return 0, errUploadTooLarge
	}
	return n, nil
}

var errUploadTooLarge = errorf(fasthttp.StatusRequestEntityTooLarge, "upload_too_large", "Upload-Length is larger than Tus-Max-Size (53687091200 bytes)")

// tusCreate serves POST: creation, creation-defer-length,
// creation-with-upload and concatenation.
func (s *Server) tusCreate(ctx context.Context, rc *fasthttp.RequestCtx, rq *request) error {
	h := &rc.Request.Header
	var cc concat
	if v := h.Peek("Upload-Concat"); v != nil {
		var err error
		if cc, err = parseConcat(string(v)); err != nil {
			return errBadRequest("invalid_concat", err)
		}
	}
	mdRaw := string(h.Peek("Upload-Metadata"))
	md, err := parseMetadata(mdRaw)
	if err != nil {
		return errBadRequest("invalid_metadata", err)
	}
	if len(cc.Final) > 0 {
		if h.Peek("Upload-Length") != nil || h.Peek("Upload-Defer-Length") != nil {
			return errorf(fasthttp.StatusBadRequest, "invalid_length", "a final concatenation takes its length from its partial uploads")
		}
		return s.createFinal(ctx, rc, rq, cc, mdRaw, md)
	}
	length, err := parseLength(h)
	if err != nil {
		return err
	}
	var sh assetShape
	if cc.Partial {
		// Partial uploads carry no metadata (tus-js-client's
		// parallelUploads); whatever they carry is kept, unchecked.
		sh, _ = md.shape()
	} else if sh, err = md.shape(); err != nil {
		return err
	}

	// creation-with-upload: a body of the TUS chunk type is the first chunk.
	size := int64(h.ContentLength())
	withData := isOffsetType(h.ContentType()) && size != 0 && size != -2
	if withData {
		if size > pipeline.MaxChunk {
			return errChunkTooBig
		}
		if length >= 0 && size > length {
			return errPastLength
		}
	}
	var sum *pipeline.Checksum
	if withData {
		if sum, err = parseChecksumHeader(h); err != nil {
			return err
		}
	}

	id := apikey.NewID()
	rq.uploadID = id
	now := time.Now().UTC()
	sess := sessionstore.Session{
		ID: id, Account: rq.account, Length: length, Metadata: mdRaw,
		Partial: cc.Partial, NextPart: 1,
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.UploadExpiry),
	}
	asset := sessionstore.Asset{
		ID: id, Account: rq.account, SessionID: id, Type: sh.Type,
		State: sessionstore.StateUploading, SizeBytes: length,
		ContentType: sh.ContentType, Filename: sh.Filename, Metadata: md,
		StorageKey: storageKey(id), CreatedAt: now,
	}
	if !cc.Partial {
		// A partial upload has a session but no visible asset.
		sess.AssetID = id
	} else {
		asset = sessionstore.Asset{}
	}
	if err := s.createUpload(ctx, &sess, asset); err != nil {
		return err
	}

	rc.Response.Header.Set("Location", s.baseURL(rc)+uploadsPath+"/"+id)
	rc.Response.Header.Set("Upload-Expires", sess.ExpiresAt.UTC().Format(httpTime))
	switch {
	case withData:
		if sess, err = s.writeChunk(ctx, rc, rq, sess, chunkRequest{offset: 0, size: size, sum: sum, length: -1}); err != nil {
			return err
		}
		rc.Response.Header.Set("Upload-Offset", fmt.Sprint(sess.Offset))
		// The data's commits slid the expiry.
		rc.Response.Header.Set("Upload-Expires", sess.ExpiresAt.UTC().Format(httpTime))
	case length == 0:
		if sess, err = s.finishIfFull(ctx, sess); err != nil {
			return err
		}
	}

	resp := createResponse{SessionID: id}
	if !cc.Partial {
		a := asset
		if sess.Completed {
			if a, err = s.store.Asset(ctx, id); err != nil {
				return fmt.Errorf("proxy: reload asset: %w", err)
			}
		}
		resp.Asset = s.assetJSON(ctx, rc, a)
	}
	writeJSON(rc, fasthttp.StatusCreated, &resp)
	return nil
}

// createUpload prepares storage and stores the session and asset; storage
// is freed again when the store refuses.
func (s *Server) createUpload(ctx context.Context, sess *sessionstore.Session, asset sessionstore.Asset) error {
	u := uploadOf(*sess)
	storage, err := s.pipe.Sink().Create(ctx, u)
	if err != nil {
		return fmt.Errorf("proxy: create storage: %w", err)
	}
	sess.Storage = storage
	if err := s.store.CreateUpload(ctx, *sess, asset); err != nil {
		u.Storage = storage
		if aerr := s.pipe.Sink().Abort(context.WithoutCancel(ctx), u); aerr != nil {
			s.log.Warn("free storage of failed creation", "upload_id", sess.ID, "err", aerr)
		}
		return fmt.Errorf("proxy: create upload: %w", err)
	}
	s.metrics.created.Add(1)
	return nil
}

// storageKey is an upload's object key.
func storageKey(id string) string { return "uploads/" + id }

// uploadOf is what the pipeline needs of a session.
func uploadOf(sess sessionstore.Session) pipeline.Upload {
	md, _ := parseMetadata(sess.Metadata)
	sh, _ := md.shape()
	return pipeline.Upload{
		ID: sess.ID, Key: storageKey(sess.ID), Length: sess.Length, Offset: sess.Offset,
		HashState: sess.HashState, Storage: sess.Storage, ContentType: sh.ContentType,
	}
}
