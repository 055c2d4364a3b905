package proxy

import (
	"context"
	"fmt"
	"strings"

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
	return parseUploadLength(lv)
}

var errUploadTooLarge = codeUploadTooLarge.err()

// parseCreate reads a POST's headers. It has no side effects, so the
// Expect handler runs it before 100 Continue. A final concatenation's
// shape is left to create.
func parseCreate(h *fasthttp.RequestHeader) (createIntent, error) {
	var c createIntent
	var err error
	if v := h.Peek("Upload-Concat"); v != nil {
		if c.concat, err = parseConcat(string(v)); err != nil {
			return c, errBadRequest(codeInvalidConcat, err)
		}
	}
	c.mdRaw = string(h.Peek("Upload-Metadata"))
	if c.md, err = parseMetadata(c.mdRaw); err != nil {
		return c, errBadRequest(codeInvalidMetadata, err)
	}
	if len(c.concat.Final) > 0 {
		if h.Peek("Upload-Length") != nil || h.Peek("Upload-Defer-Length") != nil {
			return c, codeInvalidLength.with("a final concatenation takes its length from its partial uploads")
		}
		return c, nil
	}
	if c.length, err = parseLength(h); err != nil {
		return c, err
	}
	// Partial uploads carry no metadata (tus-js-client's
	// parallelUploads); whatever they carry is kept, unchecked.
	if err = c.setShape(c.concat.Partial); err != nil {
		return c, err
	}
	err = parseData(h, &c)
	return c, err
}

// parseData reads what a creation-with-upload says of its first chunk:
// a body of the TUS chunk type is one.
func parseData(h *fasthttp.RequestHeader, c *createIntent) error {
	size := contentSize(h)
	c.withData = isOffsetType(h.ContentType()) && size != 0
	if !c.withData {
		return nil
	}
	if size > pipeline.MaxChunk {
		return errChunkTooBig
	}
	if err := agreeLength(&c.length, false, 0, size); err != nil {
		return err
	}
	sum, err := parseChecksumHeader(h)
	c.data = appendIntent{offset: 0, size: size, sum: sum, length: -1}
	return err
}

// create serves POST: creation, creation-defer-length,
// creation-with-upload and concatenation.
func (t tusProtocol) create(ctx context.Context, rc *fasthttp.RequestCtx, rq *request) error {
	c, err := parseCreate(&rc.Request.Header)
	if err != nil {
		return err
	}
	if len(c.concat.Final) > 0 {
		return t.createFinal(ctx, rc, rq, c)
	}
	sess, asset, err := t.uploads.create(ctx, rq, c)
	if err != nil {
		return err
	}
	id := sess.ID
	rc.Response.Header.Set("Location", t.srv.baseURL(rc)+uploadsPath+"/"+id)
	rc.Response.Header.Set("Upload-Expires", sess.ExpiresAt.UTC().Format(httpTime))
	switch {
	case c.withData:
		if sess, err = t.write(ctx, rc, rq, sess, c.data); err != nil {
			return err
		}
		rc.Response.Header.Set("Upload-Offset", fmt.Sprint(sess.Offset))
		// The data's commits slid the expiry.
		rc.Response.Header.Set("Upload-Expires", sess.ExpiresAt.UTC().Format(httpTime))
	case c.length == 0:
		// All its bytes (none) are stored: complete it
		// (upload.Service.Finish).
		if sess, err = t.svc.Finish(ctx, sess); err != nil {
			return httpError(err)
		}
	}

	resp := createResponse{SessionID: id}
	if !c.concat.Partial {
		a := asset
		if sess.Completed {
			if a, err = t.store.Asset(ctx, id); err != nil {
				return fmt.Errorf("proxy: reload asset: %w", err)
			}
		}
		resp.Asset = t.srv.assetJSON(ctx, rc, a)
	}
	writeJSON(rc, fasthttp.StatusCreated, &resp)
	return nil
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
