package proxy

import (
	"context"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/upload"
	"github.com/valyala/fasthttp"
)

// The front both upload dialects share (TUS 1.0.0 in tus*.go, the IETF
// draft in ietf*.go). A dialect parses a request into an appendIntent or
// a createIntent and renders the result; what it asks of an upload goes
// through the functions here: one check of an append before its body is
// read (checkAppend), one write of a body (write), one creation (create).
// Where the dialects differ in a check, the difference is data
// (appendRules), not a second copy.

// uploads is what the dialects need to serve an upload request.
type uploads struct {
	svc    *upload.Service
	store  sessionstore.Store
	expiry time.Duration // Config.UploadExpiry
	// srv reads request bodies (body.go), makes URLs and asset JSON, and
	// claims direct upload grants.
	srv *Server
}

func uploadsOf(s *Server) uploads {
	return uploads{svc: s.svc, store: s.store, expiry: s.cfg.UploadExpiry, srv: s}
}

// own is the request account's upload id (upload.Service.Own): another
// account's is sessionstore.ErrNotFound exactly like an unknown id, so
// every route answers both alike (never revealing that it exists).
func (u uploads) own(ctx context.Context, rq *request, id string) (sessionstore.Session, error) {
	return u.svc.Own(ctx, rq.account, id)
}

// load returns the request account's session id: 404 when unknown or
// another account's (never revealing which), 410 when expired.
func (u uploads) load(ctx context.Context, rq *request, id string) (sessionstore.Session, error) {
	sess, err := u.svc.Load(ctx, rq.account, id)
	if err != nil {
		return sess, httpError(err)
	}
	if !sess.Completed {
		rq.expires = sess.ExpiresAt
	}
	return sess, nil
}

// offset is the session an offset retrieval reports
// (upload.Service.Offset): the offset answered is one the next append is
// accepted at.
func (u uploads) offset(ctx context.Context, rq *request, id string) (sessionstore.Session, error) {
	sess, err := u.svc.Offset(ctx, rq.account, id)
	if sess.ID != "" && !sess.Completed {
		rq.expires = sess.ExpiresAt
	}
	return sess, httpError(err)
}

// remove serves DELETE (termination, upload.Service.Delete) in either
// dialect: frees the stored bytes and soft-deletes the asset. A session
// that is already gone, or another account's, is a 204 that changes
// nothing.
func (u uploads) remove(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, id string) error {
	if err := u.svc.Delete(ctx, rq.account, id); err != nil {
		return err
	}
	rc.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

// appendIntent is one append as a dialect's request states it.
type appendIntent struct {
	offset int64              // where the client says the bytes go
	size   int64              // Content-Length, -1 when chunked
	length int64              // an upload length the request gives, -1: none
	sum    *pipeline.Checksum // TUS's Upload-Checksum, the draft's Content-Digest
	// done: the content ends the upload; repr is then the SHA-256 the
	// whole upload must have (the draft's Repr-Digest).
	done bool
	repr []byte
	// stream: the body may be longer than one append (the draft's), so
	// it goes in segments (upload.Service.AppendStream) and completes the
	// upload when done. Otherwise it is one append of at most MaxChunk
	// (a TUS PATCH) that applies length.
	stream bool
	// committed, when set, is told each offset a commit of the body made
	// durable (the draft's progress 104s).
	committed func(offset int64)
}

// lengthRule is how a dialect checks an append's length before the body.
type lengthRule uint8

const (
	// lengthFits (TUS): the length a request gives must hold the bytes
	// stored and this body (upload.LengthWith), and the body the length.
	lengthFits lengthRule = iota
	// lengthAgrees (the draft): a length the request gives must be the
	// upload's once that is known; the service checks the body as it
	// streams.
	lengthAgrees
)

// appendRules is where the dialects differ in what an append is refused
// for before its body is read.
type appendRules struct {
	final     *Error // an append to a final concatenation
	completed *Error // content for an upload that is complete
	length    lengthRule
}

// tusAppend are TUS's rules.
var tusAppend = appendRules{final: codeFinalUpload.err(), completed: errPastLength, length: lengthFits}

// checkAppend is everything an append can be refused for before its body
// is read: the upload's owner and state, offset and length (refuseAppend,
// under the dialect's rules). It has no side effects, so the Expect
// handler runs it before 100 Continue (the handler runs it again: the
// upload may have moved in between). It returns the upload as loaded, or
// none when it could not be loaded.
func (u uploads) checkAppend(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, id string, in appendIntent, r appendRules) (sessionstore.Session, error) {
	sess, err := u.load(ctx, rq, id)
	if err != nil {
		return sessionstore.Session{}, err
	}
	requestFence(rc, sess)
	return sess, refuseAppend(sess, in, r)
}

// refuseAppend is why append in cannot go to sess as it stands, or nil.
func refuseAppend(sess sessionstore.Session, in appendIntent, r appendRules) error {
	switch {
	case len(sess.ConcatOf) > 0:
		return r.final
	case in.offset != sess.Offset:
		return errOffset(sess.Offset, in.offset)
	case r.length == lengthAgrees && in.length >= 0 && sess.Length >= 0 && in.length != sess.Length:
		return errInconsistentLength
	case sess.Completed && in.size != 0:
		return r.completed
	case sess.Completed || r.length == lengthAgrees:
		return nil
	}
	length, err := upload.LengthWith(sess, in.length, in.size)
	if err != nil {
		return httpError(err)
	}
	if length >= 0 && in.size > length-sess.Offset {
		return errPastLength
	}
	return nil
}

// write is an append's body going to the upload service: one append
// (upload.Service.Append), or in segments when in.stream
// (upload.Service.AppendStream). The service streams it into the upload
// under its lease, fenced with the head fence the request first read,
// and completes the upload with its last byte. It returns the session as
// last committed, also with an error.
func (u uploads) write(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, sess sessionstore.Session, in appendIntent) (sessionstore.Session, error) {
	heads, began := requestFence(rc, sess), rc.Time()
	var body upload.StreamBody
	if !in.stream || in.size != 0 {
		b := u.srv.newBodyReader(rc, rq)
		defer u.srv.trackBody(b)()
		body = appendBody{b}
	}
	var err error
	if in.stream {
		req := upload.StreamRequest{Size: in.size, Checksum: in.sum, Done: in.done, Repr: in.repr, Heads: heads, Began: began}
		if body != nil {
			req.Body, req.Committed = body, in.committed
		}
		sess, err = u.svc.AppendStream(ctx, sess, req)
	} else {
		sess, err = u.svc.Append(ctx, sess, upload.AppendRequest{
			Offset: in.offset, Size: in.size, Checksum: in.sum, Length: in.length,
			Body: body, Heads: heads, Began: began,
		})
	}
	return sess, httpError(err)
}

// createIntent is a creation as a dialect's request states it.
type createIntent struct {
	length int64 // -1: deferred, or not known yet
	mdRaw  string
	md     metadata
	shape  assetShape
	// concat is TUS's Upload-Concat: a partial upload has no visible
	// asset; a final one is joined from its partials.
	concat concat
	// data is the creation's first append (at offset 0), when withData.
	data     appendIntent
	withData bool
}

// setShape is the asset's kind, content type and file name from the
// metadata. A lenient shape keeps whatever the metadata carries,
// unchecked.
func (c *createIntent) setShape(lenient bool) error {
	var err error
	c.shape, err = c.md.shape()
	if lenient {
		return nil
	}
	return err
}

// create makes the upload of a creation: its session and asset, stored
// by the upload service (Create; Concat for a final concatenation; Claim
// for a direct upload URL's grant). A refusal leaves nothing; on success
// the session and asset are the upload as stored.
func (u uploads) create(ctx context.Context, rq *request, c createIntent) (sessionstore.Session, sessionstore.Asset, error) {
	sess, asset := u.newUpload(rq, c)
	var err error
	d := rq.principal.claim()
	switch {
	case len(c.concat.Final) > 0:
		err = httpError(u.svc.Concat(ctx, &sess, asset))
	case d != nil:
		// A direct upload URL's creation claims its grant first, then
		// makes the storage.
		err = httpError(u.svc.Claim(ctx, &sess, &asset, d))
	default:
		err = httpError(u.svc.Create(ctx, &sess, asset))
	}
	return sess, asset, err
}

// newUpload is the session and asset of a new upload of the request's
// account (TUS and the draft alike); rq.uploadID is set to its id. A
// partial upload has a session but no visible asset.
func (u uploads) newUpload(rq *request, c createIntent) (sessionstore.Session, sessionstore.Asset) {
	id := apikey.NewID()
	if d := rq.principal.claim(); d != nil {
		// A direct upload's id is also its upload's (its grant's policy).
		id = d.ID
	}
	rq.uploadID = id
	now := time.Now().UTC()
	sess := sessionstore.Session{
		ID: id, Account: rq.account, Length: c.length, Metadata: c.mdRaw, NextPart: 1,
		CreatedAt: now, ExpiresAt: now.Add(u.expiry), Partial: c.concat.Partial,
	}
	if c.concat.Partial {
		return sess, sessionstore.Asset{}
	}
	sess.AssetID = id
	if len(c.concat.Final) > 0 {
		sess.ConcatOf, sess.ConcatHeader = c.concat.Final, c.concat.Raw
	}
	asset := sessionstore.Asset{
		ID: id, Account: rq.account, SessionID: id, Type: c.shape.Type,
		State: sessionstore.StateUploading, SizeBytes: c.length,
		ContentType: c.shape.ContentType, Filename: c.shape.Filename, Metadata: c.md,
		StorageKey: storageKey(id), CreatedAt: now,
	}
	return sess, asset
}

// parseUploadLength reads an Upload-Length value: a non-negative integer
// within the 50 GiB limit.
func parseUploadLength(v string) (int64, error) {
	n, err := parseInt(v)
	if err != nil {
		return 0, codeInvalidLength.err()
	}
	if n > pipeline.MaxUploadLength {
		return 0, errUploadTooLarge
	}
	return n, nil
}

// contentSize is a request's Content-Length: -1 when chunked, 0 without
// a body.
func contentSize(h *fasthttp.RequestHeader) int64 {
	size := int64(h.ContentLength())
	if size == -2 {
		size = 0
	}
	return size
}

// agreeLength applies the length rules of content at offset with size
// bytes (-1: chunked) to length (-1: not known): content that ends the
// upload (done) tells its length, which must agree with a known one;
// content may not run past a known length.
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
