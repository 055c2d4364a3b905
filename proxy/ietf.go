package proxy

import (
	"context"
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
	raw, ok, err := single(h, name, codeInvalidUploadComplete)
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
		return codeMissingUploadComplete.with("Upload-Incomplete: ?0 or ?1 is required at interop version 3")
	}
	return codeMissingUploadComplete.err()
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
// (it is written in segments), because clients that predate
// Upload-Limit (iOS 17) send a whole file in their creation request.
func uploadLimit(expiry time.Duration, expires time.Time) string {
	age := expiry
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

// draftCheck refuses, before the method check, an upload id that cannot
// exist.
func draftCheck(_ *fasthttp.RequestCtx, rq *request, p *params) error {
	if p.id != "" && !validID(p.id) {
		return errNotFound
	}
	rq.uploadID = p.id
	return nil
}

// draftProtocol is the IETF draft's dialect: it parses draft requests
// into the shared front's calls (uploads.go) and renders their results.
type draftProtocol struct{ uploads }

func draftFor(s *Server) draftProtocol { return draftProtocol{uploadsOf(s)} }

// serve serves an admitted draft request (rq.account is set).
// Creation is any request with content to the creation URL (the draft:
// "all request methods that allow content"; POST and PUT here); the
// upload resource takes HEAD and GET (offset), PATCH (append) and DELETE
// (cancel).
func (t draftProtocol) serve(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, p *params) error {
	d, id := p.draft, p.id
	if d.v <= 6 && rq.method != fasthttp.MethodPatch && id != "" && rc.Request.Header.Peek("Upload-Offset") != nil {
		// Drafts -01 to -05: offset retrieval and cancellation must not
		// carry Upload-Offset, and a server answers one that does 400.
		return errOffsetNotAllowed
	}
	switch rq.method {
	case fasthttp.MethodPost, fasthttp.MethodPut:
		return t.create(ctx, rc, rq, d)
	case fasthttp.MethodHead, fasthttp.MethodGet:
		return t.head(ctx, rc, rq, d, id)
	case fasthttp.MethodPatch:
		return t.patch(ctx, rc, rq, d, id)
	default:
		return t.remove(ctx, rc, rq, id)
	}
}

// Draft errors.
var (
	errPartialType = codeUnsupportedContentType.with(
		"appends must be Content-Type: application/partial-upload (interop version 6 and later)")
	errOffsetNotAllowed = codeInvalidOffset.with(
		"offset retrieval and cancellation must not carry Upload-Offset (interop versions 3 to 6)")
	errDraftCompleted     = codeUploadComplete.err()
	errInconsistentLength = codeInconsistentLength.err()
	errDraftFinal         = codeFinalUpload.with("a final concatenation cannot be appended to")
)

// appendRules are the draft's rules for an append (uploads.checkAppend):
// up to -05 (interop 6), content for a completed upload is refused as
// such (400), later as past its length.
func (v draft) appendRules() appendRules {
	r := appendRules{final: errDraftFinal, completed: errPastLength, length: lengthAgrees}
	if v <= 6 {
		r.completed = errDraftCompleted
	}
	return r
}

// expiresOf is the expiry of the upload a request concerns, for a
// 413's Upload-Limit: its max-age must not promise more than the HEAD
// that follows reports. The upload is loaded when the request was refused
// before it was (its headers); zero (the full expiry) for a creation.
func (t draftProtocol) expiresOf(rq *request, d *draftReq) time.Time {
	if !d.expires.IsZero() || rq.uploadID == "" || rq.account == "" {
		return d.expires
	}
	ctx, cancel := context.WithTimeout(t.srv.base, expectTimeout)
	defer cancel()
	if sess, err := t.own(ctx, rq, rq.uploadID); err == nil {
		return sess.ExpiresAt
	}
	return time.Time{}
}

// ietfFail answers err in the draft's dialect (the router's refusal of a
// draft request).
func (s *Server) ietfFail(ctx *fasthttp.RequestCtx, rq *request, d *draftReq, err error) {
	draftFor(s).fail(ctx, rq, d, err)
}

// fail answers err as a problem (problem.go): the status, headers, log
// and metric of any error answer (reportError), then the draft's fields,
// and a 409 gets the offset to resume from.
func (t draftProtocol) fail(ctx *fasthttp.RequestCtx, rq *request, d *draftReq, err error) {
	s := t.srv
	if d.v <= 6 && errors.Is(err, errExpired) {
		// Drafts -01 to -05 answer 404 for an upload that is no longer
		// active; 410 came with -06.
		err = errNotFound
	}
	linger := rq.bodyRoute && s.settleBody(ctx, rq)
	e, known := s.reportError(ctx, rq, err)
	p := newProblem(e)
	if !known {
		p.RequestID = rq.id
	}
	h := &ctx.Response.Header
	t.failFields(h, rq, d, e, &p)
	if d.v >= 7 && ctx.IsPatch() && h.Peek("Upload-Complete") == nil {
		// From -06 on, every answer to an append that did not complete
		// the upload says so, refusals included (a client must not take
		// a 4xx for the end of the upload).
		d.v.setDone(h, d.completed)
	}
	writeProblem(ctx, e.Status, &p)
	if linger {
		s.lingerClose(ctx)
	}
}

// failFields adds what the draft says an answer e carries: the offset to
// resume from, whether the upload is done, the size limit.
func (t draftProtocol) failFields(h *fasthttp.ResponseHeader, rq *request, d *draftReq, e *Error, p *problem) {
	switch {
	case e.Status == fasthttp.StatusConflict && d.expected >= 0:
		h.Set("Upload-Offset", strconv.FormatInt(d.expected, 10))
		d.v.setDone(h, false)
		if e.code == codeOffsetMismatch && d.provided >= 0 {
			p.registered(e)
			p.ExpectedOffset, p.ProvidedOffset = &d.expected, &d.provided
		}
	case e == errInconsistentLength:
		p.registered(e)
		d.v.setDone(h, false)
	case e == errReprMismatch && d.expected >= 0:
		// The request stored nothing: the upload resumes where it was.
		h.Set("Upload-Offset", strconv.FormatInt(d.expected, 10))
		d.v.setDone(h, false)
	case e == errReprFailed:
		d.v.setDone(h, true) // the upload is over: it failed
	case e.Status == fasthttp.StatusRequestEntityTooLarge:
		h.Set("Upload-Limit", uploadLimit(t.expiry, t.expiresOf(rq, d)))
	}
}
