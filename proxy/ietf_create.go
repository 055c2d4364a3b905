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
	"github.com/roughy/ingest/upload"
	"github.com/valyala/fasthttp"
)

// draftCreation is a draft creation request's headers, parsed and checked.
type draftCreation struct {
	done   bool  // the content ends the upload (optimistic creation)
	length int64 // -1: not known yet
	size   int64 // Content-Length, -1 when chunked
	mdRaw  string
	md     metadata
	shape  assetShape
	dig    draftDigests
}

// parseDraftCreate reads a creation request. It has no side effects, so
// the Expect handler runs it before 100 Continue.
func parseDraftCreate(v draft, h *fasthttp.RequestHeader, args *fasthttp.Args) (draftCreation, error) {
	var c draftCreation
	done, said, err := v.ends(h)
	if err != nil {
		return c, err
	}
	if !said {
		return c, v.errNoComplete()
	}
	c.done = done
	if c.length, err = draftLength(h); err != nil {
		return c, err
	}
	c.size = int64(h.ContentLength())
	if c.size == -2 {
		c.size = 0
	}
	if err := agreeLength(&c.length, c.done, 0, c.size); err != nil {
		return c, err
	}
	if c.dig, err = parseDigests(h); err != nil {
		return c, err
	}
	if c.dig.content != nil && c.size > pipeline.MaxChunk {
		return c, errDigestTooLong
	}
	if c.md, err = draftMetadata(h, args); err != nil {
		return c, err
	}
	if c.shape, err = c.md.shape(); err != nil {
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
	n, err := parseInt(strings.TrimSpace(lv))
	if err != nil {
		return 0, codeInvalidLength.err()
	}
	if n > pipeline.MaxUploadLength {
		return 0, errUploadTooLarge
	}
	return n, nil
}

// agreeLength applies the draft's length rules to a request at offset
// with size bytes of content (-1: chunked): content that ends the upload
// tells its length, which must agree with Upload-Length; content may not
// run past a known length.
func agreeLength(length *int64, done bool, offset, size int64) error {
	if done && size >= 0 {
		if *length >= 0 && *length != offset+size {
			return errInconsistentLength
		}
		*length = offset + size
	}
	if *length >= 0 && size > *length-offset {
		return errPastLength
	}
	if *length > pipeline.MaxUploadLength {
		return errUploadTooLarge
	}
	return nil
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

// ietfCreate serves a creation: an upload resource is made, announced in
// a 104 when content follows, and the content is appended. Content that
// ends the upload is answered as the asset (200, Upload-Complete: ?1),
// else 201 with Location and Upload-Limit.
func (s *Server) ietfCreate(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, d *draftReq) error {
	c, err := parseDraftCreate(d.v, &rc.Request.Header, rc.QueryArgs())
	if err != nil {
		return err
	}
	if c.done && c.size == 0 && c.dig.repr != nil && !emptyRepr(c.dig.repr) {
		return errReprMismatch // an empty upload is not created with a wrong digest
	}
	sess, asset := s.newUpload(rq, c.length, c.mdRaw, c.md, c.shape)
	sess.AssetID = sess.ID
	if err := s.createUpload(ctx, &sess, asset); err != nil {
		return err
	}
	d.expected, d.expires = 0, sess.ExpiresAt
	loc := s.baseURL(rc) + uploadsPath + "/" + sess.ID
	rc.Response.Header.Set("Location", loc)
	if c.size != 0 {
		s.interim(rc, d.v, "Location", loc, "Upload-Limit", s.uploadLimit(sess.ExpiresAt))
	}
	sess, err = s.ietfAppend(ctx, rc, rq, d, sess, c.size, c.done, c.dig)
	if err != nil {
		return err
	}
	if sess.Completed {
		return s.ietfAsset(ctx, rc, d, sess)
	}
	s.ietfPending(rc, d, sess)
	writeJSON(rc, fasthttp.StatusCreated, &createResponse{SessionID: sess.ID, Asset: s.assetJSON(ctx, rc, asset)})
	return nil
}

// ietfAppend writes size bytes of the request's content (-1: chunked) at
// sess's offset (upload.Service.AppendStream): in segments of at most
// MaxChunk (the TUS limit of one request), since a client that predates
// Upload-Limit sends a whole file in one request. Each segment commits
// what it stored, so an interruption keeps every durable byte; 104s tell
// the client the offsets made durable (progress). When done, the upload
// is completed, its length inferred from a chunked body.
func (s *Server) ietfAppend(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, d *draftReq, sess sessionstore.Session, size int64, done bool, dig draftDigests) (sessionstore.Session, error) {
	req := upload.StreamRequest{Size: size, Checksum: dig.content, Done: done, Repr: dig.repr,
		// Every segment is fenced with the fence the request first read.
		Heads: requestFence(rc, sess), Began: rc.Time()}
	if size != 0 {
		body := s.newBodyReader(rc, rq)
		defer s.trackBody(body)()
		req.Body = appendBody{body}
		if dig.content == nil {
			req.Committed = s.progress(rc, d.v, sess.Offset, size)
		}
	}
	sess, err := s.svc.AppendStream(ctx, sess, req)
	if size != 0 {
		d.expected = sess.Offset
	}
	return sess, digestError(httpError(err))
}

// progressEvery spaces the progress 104s of one request.
const progressEvery = time.Second

// progress returns what tells the client, in a 104 with Upload-Offset,
// each offset that a commit of the request's content made durable
// (interop 5 and later; nil before): at most one per progressEvery, none
// for the commit that ends the content (its final response follows), and
// never Location (the draft: progress 104s must not carry it). The S3 sink
// commits each part; the local sink each 64 MiB segment.
func (s *Server) progress(rc *fasthttp.RequestCtx, v draft, start, size int64) func(int64) {
	if v < 5 {
		return nil
	}
	var last time.Time
	return func(offset int64) {
		if (size >= 0 && offset >= start+size) || time.Since(last) < progressEvery {
			return
		}
		last = time.Now()
		s.interim(rc, v, "Upload-Offset", strconv.FormatInt(offset, 10))
	}
}

// ietfPending sets the fields of a response to a request that left the
// upload incomplete.
func (s *Server) ietfPending(rc *fasthttp.RequestCtx, d *draftReq, sess sessionstore.Session) {
	h := &rc.Response.Header
	d.v.setDone(h, false)
	h.Set("Upload-Offset", fmt.Sprint(sess.Offset))
	h.Set("Upload-Limit", s.uploadLimit(sess.ExpiresAt))
}

// ietfAsset answers a completed upload: what GET /api/v1/assets/{id}
// answers (the draft: the response of the targeted resource), with
// Upload-Complete: ?1. It is also the replay for an append that arrives
// after completion.
func (s *Server) ietfAsset(ctx context.Context, rc *fasthttp.RequestCtx, d *draftReq, sess sessionstore.Session) error {
	a, err := s.store.Asset(ctx, sess.AssetID)
	if err != nil {
		return fmt.Errorf("proxy: load completed asset: %w", err)
	}
	h := &rc.Response.Header
	d.v.setDone(h, true)
	h.Set("Upload-Offset", fmt.Sprint(sess.Offset))
	h.Set("Cache-Control", "no-store")
	writeJSON(rc, fasthttp.StatusOK, s.assetJSON(ctx, rc, a))
	return nil
}
