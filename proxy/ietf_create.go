package proxy

import (
	"context"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// parseDraftCreate reads a creation request. It has no side effects, so
// the Expect handler runs it before 100 Continue. Its content, if any, is
// the creation's first append.
func parseDraftCreate(v draft, h *fasthttp.RequestHeader, args *fasthttp.Args) (createIntent, error) {
	c := createIntent{withData: true}
	done, said, err := v.ends(h)
	if err != nil {
		return c, err
	}
	if !said {
		return c, v.errNoComplete()
	}
	if c.length, err = draftLength(h); err != nil {
		return c, err
	}
	size := contentSize(h)
	if err := agreeLength(&c.length, done, 0, size); err != nil {
		return c, err
	}
	dig, err := parseDigests(h)
	if err != nil {
		return c, err
	}
	if dig.content != nil && size > pipeline.MaxChunk {
		return c, errDigestTooLong
	}
	c.data = appendIntent{size: size, length: -1, sum: dig.content, done: done, repr: dig.repr, stream: true}
	if c.md, err = draftMetadata(h, args); err != nil {
		return c, err
	}
	if err = c.setShape(false); err != nil {
		return c, err
	}
	c.mdRaw = c.md.encode()
	return c, nil
}

// draftLength reads Upload-Length (-1 when absent): an sf-integer within
// the 50 GiB limit.
func draftLength(h *fasthttp.RequestHeader) (int64, error) {
	lv, ok, err := single(h, "Upload-Length", codeInvalidLength)
	if err != nil || !ok {
		return -1, err
	}
	return parseUploadLength(strings.TrimSpace(lv))
}

// draftMetadata is an upload's metadata without TUS's Upload-Metadata
// (which is still honoured when sent: tus-js-client sends it in draft
// mode too): the kind and content type from Content-Type (video/* or
// audio/*), the file name from Content-Disposition, each overridden by
// the query parameters type, content_type and filename.
func draftMetadata(h *fasthttp.RequestHeader, args *fasthttp.Args) (metadata, error) {
	md, err := parseMetadata(string(h.Peek("Upload-Metadata")))
	if err != nil {
		return nil, errBadRequest(codeInvalidMetadata, err)
	}
	ct := strings.TrimSpace(string(h.ContentType()))
	if mt, _, _ := strings.Cut(strings.ToLower(ct), ";"); strings.HasPrefix(mt, "video/") || strings.HasPrefix(mt, "audio/") {
		if md["type"] == "" {
			md["type"], _, _ = strings.Cut(mt, "/")
		}
		if md["content_type"] == "" {
			md["content_type"] = ct
		}
	}
	if cd := h.Peek("Content-Disposition"); len(cd) > 0 && md["filename"] == "" {
		// mime decodes filename* (RFC 8187) into "filename" too.
		if _, params, err := mime.ParseMediaType(string(cd)); err == nil && params["filename"] != "" {
			md["filename"] = params["filename"]
		}
	}
	for _, k := range []string{"type", "content_type", "filename"} {
		if v := args.Peek(k); len(v) > 0 {
			md[k] = string(v)
		}
	}
	if md["type"] == "" {
		return nil, codeInvalidMetadata.with(
			"the asset's kind is unknown: send the file's Content-Type (video/… or audio/…, e.g. video/mp4) " +
				"on the creating request, or add ?type=video or ?type=audio to its URL")
	}
	return md, nil
}

// create serves a creation: an upload resource is made, announced in a
// 104 when content follows, and the content is appended. Content that
// ends the upload is answered as the asset (200, Upload-Complete: ?1),
// else 201 with Location and Upload-Limit.
func (t draftProtocol) create(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, d *draftReq) error {
	c, err := parseDraftCreate(d.v, &rc.Request.Header, rc.QueryArgs())
	if err != nil {
		return err
	}
	if c.data.done && c.data.size == 0 && c.data.repr != nil && !emptyRepr(c.data.repr) {
		return errReprMismatch // an empty upload is not created with a wrong digest
	}
	sess, asset, err := t.uploads.create(ctx, rq, c)
	if err != nil {
		return err
	}
	d.expected, d.expires = 0, sess.ExpiresAt
	loc := t.srv.baseURL(rc) + uploadsPath + "/" + sess.ID
	rc.Response.Header.Set("Location", loc)
	if c.data.size != 0 {
		interim(rc, d.v, "Location", loc, "Upload-Limit", uploadLimit(t.expiry, sess.ExpiresAt))
	}
	sess, err = t.write(ctx, rc, rq, d, sess, c.data)
	if err != nil {
		return err
	}
	if sess.Completed {
		return t.asset(ctx, rc, d, sess)
	}
	t.pending(rc, d, sess)
	writeJSON(rc, fasthttp.StatusCreated, &createResponse{SessionID: sess.ID, Asset: t.srv.assetJSON(ctx, rc, asset)})
	return nil
}

// write writes the request's content at sess's offset (uploads.write):
// in segments of at most MaxChunk (the TUS limit of one request), since a
// client that predates Upload-Limit sends a whole file in one request.
// Each segment commits what it stored, so an interruption keeps every
// durable byte; 104s tell the client the offsets made durable
// (progress). When done, the upload is completed, its length inferred
// from a chunked body.
func (t draftProtocol) write(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, d *draftReq, sess sessionstore.Session, in appendIntent) (sessionstore.Session, error) {
	if in.size != 0 && in.sum == nil {
		in.committed = progress(rc, d.v, sess.Offset, in.size)
	}
	sess, err := t.uploads.write(ctx, rc, rq, sess, in)
	if in.size != 0 {
		d.expected = sess.Offset
	}
	return sess, digestError(err)
}

// progressEvery spaces the progress 104s of one request.
const progressEvery = time.Second

// progress returns what tells the client, in a 104 with Upload-Offset,
// each offset that a commit of the request's content made durable
// (interop 5 and later; nil before): at most one per progressEvery, none
// for the commit that ends the content (its final response follows), and
// never Location (the draft: progress 104s must not carry it). The S3 sink
// commits each part; the local sink each 64 MiB segment.
func progress(rc *fasthttp.RequestCtx, v draft, start, size int64) func(int64) {
	if v < 5 {
		return nil
	}
	var last time.Time
	return func(offset int64) {
		if (size >= 0 && offset >= start+size) || time.Since(last) < progressEvery {
			return
		}
		last = time.Now()
		interim(rc, v, "Upload-Offset", strconv.FormatInt(offset, 10))
	}
}

// pending sets the fields of a response to a request that left the
// upload incomplete.
func (t draftProtocol) pending(rc *fasthttp.RequestCtx, d *draftReq, sess sessionstore.Session) {
	h := &rc.Response.Header
	d.v.setDone(h, false)
	h.Set("Upload-Offset", fmt.Sprint(sess.Offset))
	h.Set("Upload-Limit", uploadLimit(t.expiry, sess.ExpiresAt))
}

// asset answers a completed upload: what GET /api/v1/assets/{id}
// answers (the draft: the response of the targeted resource), with
// Upload-Complete: ?1. It is also the replay for an append that arrives
// after completion.
func (t draftProtocol) asset(ctx context.Context, rc *fasthttp.RequestCtx, d *draftReq, sess sessionstore.Session) error {
	a, err := t.store.Asset(ctx, sess.AssetID)
	if err != nil {
		return fmt.Errorf("proxy: load completed asset: %w", err)
	}
	h := &rc.Response.Header
	d.v.setDone(h, true)
	h.Set("Upload-Offset", fmt.Sprint(sess.Offset))
	h.Set("Cache-Control", "no-store")
	writeJSON(rc, fasthttp.StatusOK, t.srv.assetJSON(ctx, rc, a))
	return nil
}
