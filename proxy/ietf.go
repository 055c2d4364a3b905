package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/valyala/fasthttp"
)

// The IETF draft "Resumable Uploads for HTTP"
// (draft-ietf-httpbis-resumable-upload) is a second front door
// onto the TUS endpoint: a request without Tus-Resumable that names a
// served Upload-Draft-Interop-Version is the draft at that version. Both
// front doors share the upload service (upload.Service), takeover,
// the asset and its SHA-256: an upload created over one can be resumed
// over the other. Anything else gets TUS's 412.
//
// What each interop version changed (the draft's changelog):
//   - 3 (-01): server-made upload URL; Upload-Incomplete (inverted);
//     HEAD answers 204. Up to -05 (interop 6): an incomplete append
//     answers 201, an append to a completed upload 400, an upload no
//     longer active 404, a HEAD or DELETE with Upload-Offset 400.
//   - 5 (-03): Upload-Complete replaces Upload-Incomplete; 104 progress.
//   - 6 (-05): PATCH must be Content-Type application/partial-upload;
//     Upload-Limit; Upload-Length.
//   - 7 (-06..-08): expires renamed max-age; problem type
//     inconsistent-upload-length; every failed append says
//     Upload-Complete: ?0.
//   - 8 (-09..): Upload-Limit mandatory (104, 201, HEAD, OPTIONS);
//     OPTIONS carries Accept-Patch.
// Versions 2 and 4 shipped in no client we know of and are not served.

// draft is a request's interop version.
type draft int

// servedDrafts are the interop versions this server speaks.
var servedDrafts = map[string]draft{"3": 3, "5": 5, "6": 6, "7": 7, "8": 8}

// Draft media type and problem types.
const (
	partialUploadType = "application/partial-upload"
	problemMismatch   = "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
	problemLength     = "https://iana.org/assignments/http-problem-types#inconsistent-upload-length"
)

// draftOf returns the request's interop version when the request is the
// draft's: no Tus-Resumable (a TUS request stays TUS whatever else it
// sends) and a served Upload-Draft-Interop-Version.
func draftOf(h *fasthttp.RequestHeader) (draft, bool) {
	if h.Peek("Tus-Resumable") != nil {
		return 0, false
	}
	vs := h.PeekAll("Upload-Draft-Interop-Version")
	if len(vs) != 1 {
		return 0, false
	}
	v, ok := servedDrafts[strings.TrimSpace(string(vs[0]))]
	return v, ok
}

// parseSFBool parses a Structured Field Boolean ("?1", "?0"), parameters
// ignored; ok is false for anything else (the draft: the field is then
// ignored).
func parseSFBool(v string) (val, ok bool) {
	v, _, _ = strings.Cut(strings.TrimSpace(v), ";")
	switch strings.TrimSpace(v) {
	case "?1":
		return true, true
	case "?0":
		return false, true
	}
	return false, false
}

// ends reports whether the request's content ends the upload, and whether
// it said so: Upload-Complete, or before interop 5 the inverted
// Upload-Incomplete.
func (v draft) ends(h *fasthttp.RequestHeader) (done, said bool, err error) {
	name := "Upload-Complete"
	if v < 5 {
		name = "Upload-Incomplete"
	}
	raw, ok, err := single(h, name, "invalid_upload_complete")
	if err != nil || !ok {
		return false, false, err
	}
	b, ok := parseSFBool(raw)
	if !ok {
		return false, false, nil
	}
	if v < 5 {
		b = !b
	}
	return b, true, nil
}

// errNoComplete: the request lacks its version's completeness field.
func (v draft) errNoComplete() *Error {
	if v < 5 {
		return errorf(fasthttp.StatusBadRequest, "missing_upload_complete", "Upload-Incomplete: ?0 or ?1 is required at interop version 3")
	}
	return errorf(fasthttp.StatusBadRequest, "missing_upload_complete", "Upload-Complete: ?0 or ?1 is required")
}

// setDone writes the response's completeness field.
func (v draft) setDone(h *fasthttp.ResponseHeader, done bool) {
	if v < 5 {
		h.Set("Upload-Incomplete", sfBool(!done))
		return
	}
	h.Set("Upload-Complete", sfBool(done))
}

func sfBool(b bool) string {
	if b {
		return "?1"
	}
	return "?0"
}

// uploadLimit is the Upload-Limit of an upload that expires at expires
// (zero: not yet created, max-age is the full expiry). max-append-size is
// what TUS PATCHes may carry; a draft request with more is still taken
// (ietfAppend streams it in segments), because clients that predate
// Upload-Limit (iOS 17) send a whole file in their creation request.
func (s *Server) uploadLimit(expires time.Time) string {
	age := s.cfg.UploadExpiry
	if !expires.IsZero() {
		age = max(time.Until(expires), 0)
	}
	return "max-size=" + tusMaxSize + ", max-append-size=" + strconv.Itoa(pipeline.MaxChunk) +
		", max-age=" + strconv.FormatInt(int64(age/time.Second), 10)
}

// draftReq is what the draft's error answers need to know of a request.
type draftReq struct {
	v draft
	// provided is the request's Upload-Offset, expected the upload's
	// offset (-1: unknown), for 409's problem members.
	provided, expected int64
	// completed: the upload was found complete.
	completed bool
	// expires is the upload's expiry once known (zero before), for the
	// max-age of a 413's Upload-Limit.
	expires time.Time
}

// ietf serves the draft on the TUS endpoint (id "" is the creation URL).
func (s *Server) ietf(ctx *fasthttp.RequestCtx, rq *request, v draft, id string) {
	rq.route = strings.Replace(rq.route, "tus_", "ietf_", 1)
	s.cors(ctx)
	method := string(ctx.Method())
	rq.bodyRoute = method == fasthttp.MethodPost || method == fasthttp.MethodPut || method == fasthttp.MethodPatch
	if method == fasthttp.MethodOptions {
		allow := "OPTIONS, POST, PUT" // as ietfAdmit's
		if id != "" {
			allow = "OPTIONS, HEAD, GET, PATCH, DELETE"
		}
		ctx.Response.Header.Set("Allow", allow)
		s.tusOptions(ctx)
		if v >= 8 {
			// Appends are PATCHes of this media type (RFC 5789's
			// Accept-Patch; the draft asks for it from -09 on).
			ctx.Response.Header.Set("Accept-Patch", partialUploadType)
		}
		return
	}
	d := &draftReq{v: v, provided: -1, expected: -1}
	if id != "" && !validID(id) {
		s.ietfFail(ctx, rq, d, errNotFound)
		return
	}
	rq.uploadID = id
	rctx, cancel := s.requestContext(rq)
	defer cancel()
	if err := s.ietfDispatch(rctx, ctx, rq, d, method, id); err != nil {
		s.ietfFail(ctx, rq, d, err)
	}
}

func (s *Server) ietfDispatch(rctx context.Context, ctx *fasthttp.RequestCtx, rq *request, d *draftReq, method, id string) error {
	if err := s.ietfAdmit(rctx, ctx, rq, method, id); err != nil {
		return err
	}
	if d.v <= 6 && method != fasthttp.MethodPatch && id != "" && ctx.Request.Header.Peek("Upload-Offset") != nil {
		// Drafts -01 to -05: offset retrieval and cancellation must not
		// carry Upload-Offset, and a server answers one that does 400.
		return errOffsetNotAllowed
	}
	if rq.bodyRoute && hasBody(ctx) {
		release, ok := s.streams.acquire(rq.account)
		if !ok {
			return errTooManyBodies
		}
		defer release()
	}
	switch method {
	case fasthttp.MethodPost, fasthttp.MethodPut:
		return s.ietfCreate(rctx, ctx, rq, d)
	case fasthttp.MethodHead, fasthttp.MethodGet:
		return s.ietfHead(rctx, ctx, rq, d, id)
	case fasthttp.MethodPatch:
		return s.ietfPatch(rctx, ctx, rq, d, id)
	default:
		return s.tusDelete(rctx, ctx, rq, id)
	}
}

// ietfAdmit checks the method and the API key. Creation is any request
// with content to the creation URL (the draft: "all request methods that
// allow content"; POST and PUT here); the upload resource takes HEAD and
// GET (offset), PATCH (append) and DELETE (cancel).
func (s *Server) ietfAdmit(rctx context.Context, ctx *fasthttp.RequestCtx, rq *request, method, id string) error {
	switch {
	case id == "" && (method == fasthttp.MethodPost || method == fasthttp.MethodPut):
	case id != "" && (method == fasthttp.MethodHead || method == fasthttp.MethodGet ||
		method == fasthttp.MethodPatch || method == fasthttp.MethodDelete):
	default:
		rq.allow = "OPTIONS, POST, PUT"
		if id != "" {
			rq.allow = "OPTIONS, HEAD, GET, PATCH, DELETE"
		}
		return errMethod
	}
	return s.signIn(rctx, ctx, rq)
}

// problem is an RFC 9457 problem details body. Errors of this server that
// the draft defines no type for are "about:blank" with the status's
// phrase as title, plus the same code and message as the TUS endpoint's
// JSON errors.
type problem struct {
	Type           string `json:"type"`
	Title          string `json:"title"`
	Status         int    `json:"status"`
	Detail         string `json:"detail,omitempty"`
	Code           string `json:"code,omitempty"`
	RequestID      string `json:"request_id,omitempty"`
	ExpectedOffset *int64 `json:"expected-offset,omitempty"`
	ProvidedOffset *int64 `json:"provided-offset,omitempty"`
}

// Draft errors.
var (
	errPartialType = errorf(fasthttp.StatusUnsupportedMediaType, "unsupported_content_type",
		"appends must be Content-Type: application/partial-upload (interop version 6 and later)")
	errOffsetNotAllowed = errorf(fasthttp.StatusBadRequest, "invalid_offset",
		"offset retrieval and cancellation must not carry Upload-Offset (interop versions 3 to 6)")
	errDraftCompleted = errorf(fasthttp.StatusBadRequest, "upload_complete",
		"the upload is complete: it takes no more content")
	errInconsistentLength = errorf(fasthttp.StatusBadRequest, "inconsistent_length",
		"Upload-Length, Upload-Complete with Content-Length, and the upload's length must agree")
)

// draftExpiry is the expiry of the upload a request concerns, for a
// 413's Upload-Limit: its max-age must not promise more than the HEAD
// that follows reports. The upload is loaded when the request was refused
// before it was (its headers); zero (the full expiry) for a creation.
func (s *Server) draftExpiry(rq *request, d *draftReq) time.Time {
	if !d.expires.IsZero() || rq.uploadID == "" || rq.account == "" {
		return d.expires
	}
	ctx, cancel := context.WithTimeout(s.base, expectTimeout)
	defer cancel()
	if sess, err := s.ownSession(ctx, rq, rq.uploadID); err == nil {
		return sess.ExpiresAt
	}
	return time.Time{}
}

// ietfFail answers err as a problem. writeError does what it does for TUS
// (status, Retry-After, WWW-Authenticate, logging); the body is then
// replaced by the problem, and a 409 gets the offset to resume from.
func (s *Server) ietfFail(ctx *fasthttp.RequestCtx, rq *request, d *draftReq, err error) {
	if d.v <= 6 && errors.Is(err, errExpired) {
		// Drafts -01 to -05 answer 404 for an upload that is no longer
		// active; 410 came with -06.
		err = errNotFound
	}
	linger := rq.bodyRoute && s.settleBody(ctx, rq)
	s.writeError(ctx, rq, err)
	e, known := classify(err)
	p := problem{Type: "about:blank", Title: fasthttp.StatusMessage(e.Status), Status: e.Status,
		Detail: e.Message, Code: e.Code}
	if !known {
		p.RequestID = rq.id
	}
	h := &ctx.Response.Header
	switch {
	case e.Status == fasthttp.StatusConflict && d.expected >= 0:
		h.Set("Upload-Offset", strconv.FormatInt(d.expected, 10))
		d.v.setDone(h, false)
		if e.Code == "offset_mismatch" && d.provided >= 0 {
			p.Type, p.Title = problemMismatch, "offset from request does not match offset of resource"
			p.ExpectedOffset, p.ProvidedOffset = &d.expected, &d.provided
		}
	case e == errInconsistentLength:
		p.Type, p.Title = problemLength, "inconsistent length values for upload"
		d.v.setDone(h, false)
	case e == errReprMismatch && d.expected >= 0:
		// The request stored nothing: the upload resumes where it was.
		h.Set("Upload-Offset", strconv.FormatInt(d.expected, 10))
		d.v.setDone(h, false)
	case e == errReprFailed:
		d.v.setDone(h, true) // the upload is over: it failed
	case e.Status == fasthttp.StatusRequestEntityTooLarge:
		h.Set("Upload-Limit", s.uploadLimit(s.draftExpiry(rq, d)))
	}
	if d.v >= 7 && ctx.IsPatch() && h.Peek("Upload-Complete") == nil {
		// From -06 on, every answer to an append that did not complete
		// the upload says so, refusals included (a client must not take
		// a 4xx for the end of the upload).
		d.v.setDone(h, d.completed)
	}
	b, merr := json.Marshal(&p)
	if merr != nil {
		panic(merr) // a plain struct of our own
	}
	ctx.SetContentType("application/problem+json")
	if ctx.IsHead() {
		ctx.Response.ResetBody()
		ctx.Response.Header.SetContentLength(len(b))
	} else {
		ctx.SetBody(b)
	}
	if linger {
		s.lingerClose(ctx)
	}
}
