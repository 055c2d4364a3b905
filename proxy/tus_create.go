package proxy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/upload"
	"github.com/valyala/fasthttp"
)

// createResponse is the JSON body of a 201.
type createResponse struct {
	SessionID string     `json:"session_id"`
	Asset     *assetJSON `json:"asset"`
}

func errBadRequest(code catalogueCode, err error) *Error {
	return code.with(strings.TrimPrefix(err.Error(), "proxy: "))
}

// parseLength reads Upload-Length / Upload-Defer-Length of a creation:
// exactly one of them, a length within 50 GiB, or a deferral of "1".
// It returns -1 for a deferred length.
func parseLength(h *fasthttp.RequestHeader) (int64, error) {
	lv, hasLength, err := single(h, "Upload-Length", codeInvalidLength)
	if err != nil {
		return 0, err
	}
	dv := h.Peek("Upload-Defer-Length")
	switch {
	case hasLength && dv != nil:
		return 0, codeInvalidLength.with("send Upload-Length or Upload-Defer-Length, not both")
	case !hasLength && dv == nil:
		return 0, codeInvalidLength.with("Upload-Length or Upload-Defer-Length: 1 is required")
	case dv != nil:
		if string(dv) != "1" {
			return 0, codeInvalidLength.with("Upload-Defer-Length must be 1")
		}
		return -1, nil
	}
	n, err := parseInt(lv)
	if err != nil {
		return 0, codeInvalidLength.err()
	}
	if n > pipeline.MaxUploadLength {
		return 0, errUploadTooLarge
	}
	return n, nil
}

var errUploadTooLarge = codeUploadTooLarge.err()

// creation is a POST's headers, parsed and checked.
type creation struct {
	cc    concat
	mdRaw string
	md    metadata
	// The rest is unset for a final concatenation.
	shape    assetShape
	length   int64 // -1: deferred
	withData bool  // creation-with-upload: the body is the first chunk
	size     int64 // Content-Length of the data, -1 when chunked
	sum      *pipeline.Checksum
}

// parseCreate reads a POST's headers. It has no side effects, so the
// Expect handler runs it before 100 Continue.
func parseCreate(h *fasthttp.RequestHeader) (creation, error) {
	var c creation
	var err error
	if v := h.Peek("Upload-Concat"); v != nil {
		if c.cc, err = parseConcat(string(v)); err != nil {
			return c, errBadRequest(codeInvalidConcat, err)
		}
	}
	c.mdRaw = string(h.Peek("Upload-Metadata"))
	if c.md, err = parseMetadata(c.mdRaw); err != nil {
		return c, errBadRequest(codeInvalidMetadata, err)
	}
	if len(c.cc.Final) > 0 {
		if h.Peek("Upload-Length") != nil || h.Peek("Upload-Defer-Length") != nil {
			return c, codeInvalidLength.with("a final concatenation takes its length from its partial uploads")
		}
		return c, nil
	}
	if c.length, err = parseLength(h); err != nil {
		return c, err
	}
	if c.cc.Partial {
		// Partial uploads carry no metadata (tus-js-client's
		// parallelUploads); whatever they carry is kept, unchecked.
		c.shape, _ = c.md.shape()
	} else if c.shape, err = c.md.shape(); err != nil {
		return c, err
	}
	err = c.parseData(h)
	return c, err
}

// parseData reads what a creation-with-upload says of its first chunk:
// a body of the TUS chunk type is one.
func (c *creation) parseData(h *fasthttp.RequestHeader) error {
	c.size = int64(h.ContentLength())
	c.withData = isOffsetType(h.ContentType()) && c.size != 0 && c.size != -2
	if !c.withData {
		return nil
	}
	if c.size > pipeline.MaxChunk {
		return errChunkTooBig
	}
	if c.length >= 0 && c.size > c.length {
		return errPastLength
	}
	var err error
	c.sum, err = parseChecksumHeader(h)
	return err
}

// tusCreate serves POST: creation, creation-defer-length,
// creation-with-upload and concatenation.
func (s *Server) tusCreate(ctx context.Context, rc *fasthttp.RequestCtx, rq *request) error {
	c, err := parseCreate(&rc.Request.Header)
	if err != nil {
		return err
	}
	if len(c.cc.Final) > 0 {
		return s.createFinal(ctx, rc, rq, c.cc, c.mdRaw, c.md)
	}
	sess, asset := s.newUpload(rq, c.length, c.mdRaw, c.md, c.shape)
	id := sess.ID
	sess.Partial = c.cc.Partial
	if !c.cc.Partial {
		// A partial upload has a session but no visible asset.
		sess.AssetID = id
	} else {
		asset = sessionstore.Asset{}
	}
	if d := rq.principal.claim(); d != nil {
		// A direct upload URL's creation claims its grant first, then
		// makes the storage (upload.Service.Claim).
		err = httpError(s.svc.Claim(ctx, &sess, &asset, d))
	} else {
		err = s.createUpload(ctx, &sess, asset)
	}
	if err != nil {
		return err
	}

	rc.Response.Header.Set("Location", s.baseURL(rc)+uploadsPath+"/"+id)
	rc.Response.Header.Set("Upload-Expires", sess.ExpiresAt.UTC().Format(httpTime))
	switch {
	case c.withData:
		if sess, err = s.writeChunk(ctx, rc, rq, sess, chunkRequest{offset: 0, size: c.size, sum: c.sum, length: -1,
			heads: requestFence(rc, sess)}); err != nil {
			return err
		}
		rc.Response.Header.Set("Upload-Offset", fmt.Sprint(sess.Offset))
		// The data's commits slid the expiry.
		rc.Response.Header.Set("Upload-Expires", sess.ExpiresAt.UTC().Format(httpTime))
	case c.length == 0:
		if sess, err = s.finishIfFull(ctx, sess); err != nil {
			return err
		}
	}

	resp := createResponse{SessionID: id}
	if !c.cc.Partial {
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

// newUpload is the session and asset of a new upload of the request's
// account (TUS and the draft alike); rq.uploadID is set to its id.
func (s *Server) newUpload(rq *request, length int64, mdRaw string, md metadata, shape assetShape) (sessionstore.Session, sessionstore.Asset) {
	id := apikey.NewID()
	if d := rq.principal.claim(); d != nil {
		// A direct upload's id is also its upload's (its grant's policy).
		id = d.ID
	}
	rq.uploadID = id
	now := time.Now().UTC()
	sess := sessionstore.Session{
		ID: id, Account: rq.account, Length: length, Metadata: mdRaw, NextPart: 1,
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.UploadExpiry),
	}
	asset := sessionstore.Asset{
		ID: id, Account: rq.account, SessionID: id, Type: shape.Type,
		State: sessionstore.StateUploading, SizeBytes: length,
		ContentType: shape.ContentType, Filename: shape.Filename, Metadata: md,
		StorageKey: storageKey(id), CreatedAt: now,
	}
	return sess, asset
}

// createUpload stores a new upload (upload.Service.Create: its event
// queued, its quota reserved, its storage made); a refusal leaves
// nothing.
func (s *Server) createUpload(ctx context.Context, sess *sessionstore.Session, asset sessionstore.Asset) error {
	return httpError(s.svc.Create(ctx, sess, asset))
}

// storageKey is an upload's object key.
func storageKey(id string) string { return "uploads/" + id }

// uploadOf is what the pipeline needs of a session.
func uploadOf(sess sessionstore.Session) pipeline.Upload {
	md, _ := parseMetadata(sess.Metadata)
	sh, _ := md.shape()
	if upload.StoragePending(sess) {
		sess.Storage = nil // a marker of a claimed direct upload (upload.StorageToCreate), no sink state
	}
	return pipeline.Upload{
		ID: sess.ID, Key: storageKey(sess.ID), Length: sess.Length, Offset: sess.Offset,
		HashState: sess.HashState, Storage: sess.Storage, ContentType: sh.ContentType,
	}
}
