package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// chunkRequest is one PATCH (or the data of a POST) as its headers say.
type chunkRequest struct {
	offset int64 // Upload-Offset
	size   int64 // Content-Length, -1 when chunked
	sum    *pipeline.Checksum
	length int64 // Upload-Length sent with a PATCH of a deferred upload, else -1
	// repr is the draft's Repr-Digest (sha-256) of a request that ends
	// the upload: the commit that completes it is verified first.
	repr []byte

	// The draft's front door (ietfAppend in ietf_create.go) writes one request body as
	// segments of at most MaxChunk: body is the reader the segments
	// share (each reads at most its size, or MaxChunk when chunked), and
	// follow marks a segment after the first, which does not take the
	// upload over from a newer request but answers 409 upload_taken_over.
	body   *bodyReader
	follow bool
	// committed, when set, is told each offset a commit made durable
	// (the draft's progress 104s).
	committed func(offset int64)
}

// commitTimeout bounds one store commit. Commits run even when the request
// is canceled (shutdown): bytes that are durable should become visible.
const commitTimeout = 15 * time.Second

func errOffset(want, got int64) *Error {
	return errorf(fasthttp.StatusConflict, "offset_mismatch",
		fmt.Sprintf("Upload-Offset %d does not match the upload's offset %d", got, want))
}

// parsePatch reads a PATCH's headers into a chunk request.
func parsePatch(h *fasthttp.RequestHeader) (chunkRequest, error) {
	if !isOffsetType(h.ContentType()) {
		return chunkRequest{}, errContentType
	}
	ov, ok, err := single(h, "Upload-Offset", "invalid_offset")
	if err != nil {
		return chunkRequest{}, err
	}
	if !ok {
		return chunkRequest{}, errorf(fasthttp.StatusBadRequest, "invalid_offset", "Upload-Offset is required")
	}
	offset, err := parseInt(ov)
	if err != nil {
		return chunkRequest{}, errorf(fasthttp.StatusBadRequest, "invalid_offset", "Upload-Offset must be a non-negative integer")
	}
	size := int64(h.ContentLength())
	if size == -2 {
		size = 0
	}
	if size > pipeline.MaxChunk {
		return chunkRequest{}, errChunkTooBig
	}
	cr := chunkRequest{offset: offset, size: size, length: -1}
	if cr.sum, err = parseChecksumHeader(h); err != nil {
		return chunkRequest{}, err
	}
	lv, ok, err := single(h, "Upload-Length", "invalid_length")
	if err != nil {
		return chunkRequest{}, err
	}
	if ok {
		if cr.length, err = parseInt(lv); err != nil {
			return chunkRequest{}, errorf(fasthttp.StatusBadRequest, "invalid_length", "Upload-Length must be a non-negative integer")
		}
		if cr.length > pipeline.MaxUploadLength {
			return chunkRequest{}, errUploadTooLarge
		}
	}
	return cr, nil
}

// tusPatch serves PATCH: one chunk appended at Upload-Offset.
func (s *Server) tusPatch(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, id string) error {
	sess, cr, err := s.checkPatch(ctx, rc, rq, id)
	if err != nil {
		return err
	}
	if !sess.Completed {
		if sess, err = s.writeChunk(ctx, rc, rq, sess, cr); err != nil {
			return err
		}
	}
	rc.Response.Header.Set("Upload-Offset", strconv.FormatInt(sess.Offset, 10))
	if !sess.Completed {
		rc.Response.Header.Set("Upload-Expires", sess.ExpiresAt.UTC().Format(httpTime))
	}
	rc.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

// checkPatch is everything a PATCH can be refused for before its body is
// read: its headers, the upload's owner and state, offset and length. It
// has no side effects, so the Expect handler runs it before 100 Continue
// (the handler runs it again: the upload may have moved in between).
func (s *Server) checkPatch(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, id string) (sessionstore.Session, chunkRequest, error) {
	cr, err := parsePatch(&rc.Request.Header)
	if err != nil {
		return sessionstore.Session{}, cr, err
	}
	sess, err := s.loadSession(ctx, rq, id)
	switch {
	case err != nil:
		return sess, cr, err
	case len(sess.ConcatOf) > 0:
		return sess, cr, errorf(fasthttp.StatusForbidden, "final_upload", "a final concatenation cannot be patched")
	case !sess.Completed:
		return sess, cr, checkChunk(sess, cr)
	case cr.offset != sess.Offset:
		return sess, cr, errOffset(sess.Offset, cr.offset)
	case cr.size != 0:
		return sess, cr, errPastLength
	}
	return sess, cr, nil
}

// checkChunk refuses a chunk that cannot be written at sess as it stands.
func checkChunk(sess sessionstore.Session, cr chunkRequest) error {
	if sess.Offset != cr.offset {
		return errOffset(sess.Offset, cr.offset)
	}
	length, err := lengthWith(sess, cr)
	if err != nil {
		return err
	}
	if length >= 0 && cr.size > length-sess.Offset {
		return errPastLength
	}
	return nil
}

// lengthWith is the upload's length once a PATCH's Upload-Length is
// applied (-1: still deferred), or why that length cannot be.
func lengthWith(sess sessionstore.Session, cr chunkRequest) (int64, error) {
	switch {
	case cr.length < 0:
		return sess.Length, nil
	case sess.Length >= 0 && sess.Length != cr.length:
		return 0, errorf(fasthttp.StatusBadRequest, "invalid_length", "Upload-Length cannot change once set")
	case cr.length < sess.Offset:
		// The bytes are stored already: the length cannot be below them.
		return 0, errorf(fasthttp.StatusBadRequest, "invalid_upload_length",
			fmt.Sprintf("Upload-Length %d is below the upload's offset %d", cr.length, sess.Offset))
	case cr.length < sess.Offset+max(cr.size, 0):
		return 0, errPastLength
	}
	return cr.length, nil
}

// applyLength sets a deferred upload's length from a request's
// Upload-Length (a TUS PATCH, or a draft append that carries it or ends
// the upload). It is where a deferred length becomes known, whatever the
// protocol, so it reserves that length first: the holds taken while the
// length was deferred cover only the bytes written so far, and the writes
// that follow reserve nothing once the length is set. A refusal leaves the
// length unset and the hold as it was.
func (s *Server) applyLength(ctx context.Context, sess *sessionstore.Session, cr chunkRequest) error {
	length, err := lengthWith(*sess, cr)
	if err != nil || length == sess.Length {
		return err
	}
	if err := s.reserveQuota(ctx, sess.Account, sess.ID, length); err != nil {
		return err
	}
	if err := s.store.SetLength(ctx, sess.ID, length); err != nil {
		if errors.Is(err, sessionstore.ErrOffsetConflict) {
			return errorf(fasthttp.StatusBadRequest, "invalid_length", "Upload-Length conflicts with the upload's state")
		}
		return fmt.Errorf("proxy: set length: %w", err)
	}
	sess.Length = length
	return nil
}

// writeChunk streams the request body into the upload under its lease:
// durable prefixes are committed as they come (compare-and-set on the
// offset, fenced by the lease), and the last byte completes the upload
// before it returns. It returns the session as last committed, also with
// an error.
func (s *Server) writeChunk(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, sess sessionstore.Session, cr chunkRequest) (sessionstore.Session, error) {
	if sess.Offset != cr.offset {
		return sess, errOffset(sess.Offset, cr.offset)
	}
	if s.heads.since(sess.ID, rc.Time()) {
		// An offset retrieval began after this request (headLog): the
		// client resumes from what it answered. Checked before the
		// lease too, so that this older request takes nothing over
		// from the append that follows the HEAD.
		return sess, errTakenOver
	}
	if err := s.applyLength(ctx, &sess, cr); err != nil {
		return sess, err
	}
	if sess.Length < 0 {
		// A length still deferred reserves as it grows, before the bytes
		// come.
		if err := s.reserveQuota(ctx, sess.Account, sess.ID, deferredReservation(sess, cr)); err != nil {
			return sess, err
		}
	}
	if sess.Length >= 0 && cr.size > sess.Length-sess.Offset {
		return sess, errPastLength
	}
	sink := s.pipe.Sink()
	ctx = s.withUpload(ctx, sess.ID, sess.Account)
	parts := sink.PartsFor(uploadOf(sess), cr.size)
	var lease sessionstore.Lease
	var err error
	if cr.follow {
		// Between two segments a newer request took the upload: it wins.
		if lease, err = s.store.AcquireLease(ctx, sess.ID, s.cfg.LeaseTTL, parts); errors.Is(err, sessionstore.ErrLocked) {
			return sess, errTakenOver
		}
	} else {
		lease, err = s.takeLease(ctx, sess.ID, parts, false)
	}
	if errors.Is(err, sessionstore.ErrNotFound) {
		// The upload was read by this request a moment ago: a DELETE
		// removed it before this write took the lease.
		return sess, errDeletedUnder
	}
	if err != nil {
		return sess, fmt.Errorf("proxy: acquire lease: %w", err)
	}
	lh, wctx, release := s.hold(ctx, lease)
	defer release()
	if s.heads.since(sess.ID, rc.Time()) {
		// An offset retrieval began after this request and answered
		// without seeing it: the client resumes from that offset.
		return lease.Session, errTakenOver
	}

	// Another request may have committed between our read and the lease;
	// the lease carries the session as it stands now.
	fresh := lease.Session
	if fresh.Offset != cr.offset {
		return fresh, errOffset(fresh.Offset, cr.offset)
	}
	if fresh.Completed {
		if cr.size != 0 {
			return fresh, errPastLength
		}
		return fresh, nil
	}
	sess = fresh
	if sess.Length >= 0 && cr.size > sess.Length-sess.Offset {
		return sess, errPastLength
	}
	// A direct upload whose creation failed before its storage existed
	// gets it now (direct_tus.go).
	if sess, err = s.ensureStorage(wctx, lh.get(), sess); err != nil {
		return sess, err
	}

	body := cr.body
	var src io.Reader
	if body == nil {
		body = s.newBodyReader(rc, rq)
		src = body
	} else {
		sg := &segment{b: body, left: pipeline.MaxChunk}
		if cr.size >= 0 {
			sg.left = cr.size
		}
		src = sg
	}
	defer s.trackBody(body)()
	if cr.body == nil {
		// A shared body is registered by its request for all its
		// segments (ietfAppend).
		defer s.register(sess.ID, body)()
	}
	cur := sess
	commit := s.committer(lh, &cur, cr.committed)
	s.metrics.activeUploads.Add(1)
	wstart := time.Now()
	_, werr := s.pipe.Write(wctx, uploadOf(sess), pipeline.Chunk{
		Body: src, Size: cr.size, Checksum: cr.sum, Repr: cr.repr,
		Parts:  pipeline.PartRange{First: lease.FirstPart, Count: lease.Parts},
		Commit: commit,
	})
	s.metrics.activeUploads.Add(-1)
	s.metrics.patchSeconds.Observe(time.Since(wstart).Seconds())
	s.metrics.patchBytes.Observe(float64(body.n))
	if tl, ok := errors.AsType[*pipeline.TailLostError](werr); ok {
		cur = s.fallBack(ctx, lh, cur, tl)
	}
	if werr != nil {
		switch cause := context.Cause(wctx); {
		case body.taken.Load() != nil:
			// A newer request took the upload over: answer what it did
			// to it (409, or 404 for a DELETE).
			werr = body.taken.Load()
		case body.err != nil:
			// The client went away or stalled: that is the story, whatever
			// the sink made of the failed read.
			werr = body.err
		case cause != nil && ctx.Err() == nil && !errors.Is(cause, context.Canceled):
			werr = fmt.Errorf("proxy: write stopped: %w (%w)", cause, werr)
		}
	}
	if werr != nil {
		// A failed write completes nothing, even when it committed the
		// last byte (a body without Content-Length that runs past the
		// limit: the sink keeps what fits, then reports ErrTooLarge). The
		// client was told the request failed; a request that succeeds (a
		// HEAD, an empty PATCH at the final offset) completes the upload.
		if errors.Is(werr, pipeline.ErrTooLarge) {
			werr = fmt.Errorf("%w: %w", overflowError(sess), werr)
		}
		if errors.Is(werr, sessionstore.ErrLeaseLost) && s.deletedUnder(ctx, cur.ID) {
			// A DELETE that did not wait for this write (takeover timed
			// out) removed the upload: not a retryable 423.
			werr = errDeletedUnder
		}
		if errors.Is(werr, errDeletedUnder) {
			s.freeLate(ctx, cur)
		}
		s.metrics.failed.WithLabelValues(failReason(werr, body)).Inc()
		return cur, fmt.Errorf("proxy: write chunk: %w", werr)
	}
	// Every byte is committed: the upload is whole.
	if cur.Length >= 0 && cur.Offset == cur.Length && !cur.Completed {
		return s.complete(wctx, lh.get(), cur)
	}
	return cur, nil
}

// committer returns the pipeline's commit function for a write under lh:
// each durable prefix is committed with a compare-and-set on *cur's
// offset, fenced by the lease, and *cur becomes the committed session.
// notify, when set, is told each committed offset.
func (s *Server) committer(lh *leaseHolder, cur *sessionstore.Session, notify func(offset int64)) pipeline.CommitFunc {
	return func(c context.Context, p pipeline.Progress) (err error) {
		c, end := s.tel.span(c, "commit")
		defer func() { end(err) }()
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(c), commitTimeout)
		defer ccancel()
		start := time.Now()
		ns, err := s.store.Commit(cctx, lh.get(), sessionstore.Commit{
			ExpectOffset: cur.Offset, NewOffset: p.Offset, HashState: p.HashState,
			Storage: p.Storage, Parts: p.Parts, Length: -1,
			// Expiry slides with activity: an upload being written does
			// not expire, however long it takes in total.
			ExpiresAt: s.nextExpiry(),
			// So does the lease: the keeper skips renewals while commits
			// come often enough.
			ExtendLease: s.cfg.LeaseTTL,
		})
		s.metrics.commitSeconds.Observe(time.Since(start).Seconds())
		if err != nil {
			if errors.Is(err, sessionstore.ErrLeaseLost) {
				s.metrics.lost.Inc()
			}
			return fmt.Errorf("proxy: commit offset %d: %w", p.Offset, err)
		}
		lh.extended(start, s.cfg.LeaseTTL)
		*cur = ns
		s.metrics.commits.Add(1)
		if notify != nil {
			notify(ns.Offset)
		}
		return nil
	}
}

// fallBack commits the rewind a TailLostError asks for: the upload goes
// back to the last offset storage still holds, so that the client, told
// to retry (503), HEADs that offset and sends the lost bytes again. A
// failed rewind leaves cur as it is (the next write tries again).
func (s *Server) fallBack(ctx context.Context, lh *leaseHolder, cur sessionstore.Session, tl *pipeline.TailLostError) sessionstore.Session {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	ns, err := s.store.Commit(cctx, lh.get(), sessionstore.Commit{
		ExpectOffset: cur.Offset, NewOffset: tl.Fallback.Offset, HashState: tl.Fallback.HashState,
		Storage: tl.Fallback.Storage, Length: -1, ExpiresAt: s.nextExpiry(), Rewind: true,
	})
	if err != nil {
		s.log.Warn("upload's tail is gone; rewind failed", "upload_id", cur.ID, "offset", cur.Offset, "err", err)
		return cur
	}
	s.log.Warn("upload's tail is gone; fell back", "upload_id", cur.ID, "from", cur.Offset, "to", ns.Offset)
	return ns
}

// segment is one segment of a request written in several (ietfAppend):
// at most left bytes of b. It is a pipeline.BodyEnd: a segment that
// fills its limit tells whether the request's body ended exactly there
// (reading a byte ahead if need be), so that a chunked body of a multiple
// of MaxChunk that ends an upload has its Repr-Digest checked before its
// last segment is committed.
type segment struct {
	b    *bodyReader
	left int64
}

func (s *segment) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.b.Read(p)
	s.left -= int64(n)
	return n, err
}

// Ended implements pipeline.BodyEnd.
func (s *segment) Ended() bool { return s.left <= 0 && s.b.atEOF() }

// overflowError is the 413 of a body without Content-Length that ran past
// what a write at sess's offset may take: the 64 MiB cap when the upload
// has more room than that (or no length yet), else its Upload-Length.
func overflowError(sess sessionstore.Session) *Error {
	if sess.Length < 0 || sess.Length-sess.Offset > pipeline.MaxChunk {
		return errChunkTooBig
	}
	return errPastLength
}

// deletedUnder reports whether upload id is gone (a write lost its lease:
// was it to a DELETE?).
func (s *Server) deletedUnder(ctx context.Context, id string) bool {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := s.store.Session(cctx, id)
	return errors.Is(err, sessionstore.ErrNotFound)
}

// nextExpiry is when an upload written to now expires: UploadExpiry after
// its last commit.
func (s *Server) nextExpiry() time.Time { return time.Now().UTC().Add(s.cfg.UploadExpiry) }

// finishIfFull completes an upload whose bytes are all stored but that was
// not marked complete (a crash between the last commit and completion).
// It takes the lease over like a PATCH (takeover.go): with every byte
// stored, the holder can only be completing it (and then lets go of
// nothing it still needs: its body is read) or be dead, as when a node
// died between its last commit and the completion. Without the takeover,
// a client that resumes right after such a kill would see HEAD's offset
// at the length and stop, and the asset would stay uploading.
func (s *Server) finishIfFull(ctx context.Context, sess sessionstore.Session) (sessionstore.Session, error) {
	if sess.Completed || sess.Length < 0 || sess.Offset != sess.Length {
		return sess, nil
	}
	// Bytes the storage still holds outside its parts (an S3 tail left by
	// earlier writes when the last request carried no byte: the draft's
	// empty Upload-Complete: ?1 append) need a part number to become the
	// last part.
	parts := s.pipe.Sink().PartsFor(uploadOf(sess), 0)
	lease, err := s.takeLease(ctx, sess.ID, parts, false)
	if err != nil {
		return sess, fmt.Errorf("proxy: acquire lease to complete: %w", err)
	}
	lh, hctx, release := s.hold(ctx, lease)
	defer release()
	fresh := lease.Session
	if fresh.Completed || fresh.Length < 0 || fresh.Offset != fresh.Length {
		return fresh, nil
	}
	// An empty direct upload may still lack its storage (direct_tus.go).
	if fresh, err = s.ensureStorage(hctx, lh.get(), fresh); err != nil {
		return fresh, err
	}
	if lease.Parts > 0 {
		// A write without a body: the sink turns what it carries into
		// the last part and commits it; the offset does not move.
		cur := fresh
		_, err := s.pipe.Write(hctx, uploadOf(fresh), pipeline.Chunk{
			Body: eofReader{}, Size: 0,
			Parts:  pipeline.PartRange{First: lease.FirstPart, Count: lease.Parts},
			Commit: s.committer(lh, &cur, nil),
		})
		if tl, ok := errors.AsType[*pipeline.TailLostError](err); ok {
			cur = s.fallBack(ctx, lh, cur, tl)
		}
		if err != nil {
			return cur, fmt.Errorf("proxy: store the last part: %w", err)
		}
		fresh = cur
	}
	return s.complete(hctx, lh.get(), fresh)
}

// complete turns the stored bytes into the final object and marks the
// upload complete (asset ready, SHA-256, probe queued) in one commit.
func (s *Server) complete(ctx context.Context, l sessionstore.Lease, sess sessionstore.Session) (_ sessionstore.Session, err error) {
	ctx, end := s.tel.span(s.withUpload(ctx, sess.ID, sess.Account), "complete")
	defer func() { end(err) }()
	parts, err := s.store.Parts(ctx, sess.ID)
	if err != nil {
		return sess, fmt.Errorf("proxy: list parts: %w", err)
	}
	if err := s.pipe.Sink().Complete(ctx, uploadOf(sess), parts); err != nil {
		return sess, fmt.Errorf("proxy: complete storage: %w", err)
	}
	sum, err := pipeline.SumHex(sess.HashState)
	if err != nil {
		return sess, fmt.Errorf("proxy: final sha256: %w", err)
	}
	if err := s.emitReady(ctx, sess); err != nil {
		return sess, err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	ns, err := s.store.Commit(cctx, l, sessionstore.Commit{
		ExpectOffset: sess.Offset, NewOffset: sess.Offset, HashState: sess.HashState,
		Length: -1, Complete: true, SHA256: sum, ExpiresAt: s.nextExpiry(),
	})
	if err != nil {
		return sess, fmt.Errorf("proxy: commit completion: %w", err)
	}
	s.settleQuota(ctx, ns.Account, ns.ID, ns.Offset)
	s.metrics.completed.Add(1)
	s.log.Info("upload complete", "upload_id", sess.ID, "account", sess.Account, "bytes", sess.Offset)
	return ns, nil
}

// leaseHolder is the current lease of a write; the renewal goroutine
// replaces it while the write commits with it.
type leaseHolder struct {
	mu sync.Mutex
	l  sessionstore.Lease
	// at is when the lease was last taken, renewed or extended by a
	// commit (the start of that call: its end in the store is later).
	at time.Time
}

func (h *leaseHolder) get() sessionstore.Lease {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.l
}

func (h *leaseHolder) set(l sessionstore.Lease, at time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.l, h.at = l, at
}

// extended records a commit that started at and extended the lease by ttl.
func (h *leaseHolder) extended(at time.Time, ttl time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if at.After(h.at) {
		h.l.ExpiresAt, h.at = at.Add(ttl), at
	}
}

// since is how long ago the lease was last taken or extended.
func (h *leaseHolder) since() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return time.Since(h.at)
}

// hold keeps l renewed until release is called; the returned context is
// canceled (with the cause) if the lease is lost. release stops the
// renewal and drops the lease.
//
// The lease is registered as held by this node (holding) meanwhile, so
// that release requests never drop it as an orphan.
func (s *Server) hold(ctx context.Context, l sessionstore.Lease) (lh *leaseHolder, hctx context.Context, release func()) {
	unhold := s.holding(l)
	lh = &leaseHolder{l: l, at: time.Now()}
	hctx, cancel := context.WithCancelCause(ctx)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { s.keepLease(hctx, cancel, lh, stop) })
	return lh, hctx, func() {
		close(stop)
		wg.Wait()
		cancel(nil)
		s.releaseLease(ctx, lh)
		unhold()
	}
}

// keepLease renews the lease every third of its TTL until stop closes,
// unless a commit extended it within that third (a write committing parts
// often needs no renewals: a round trip less each time). If the lease is
// lost (or cannot be renewed before it expires), it cancels the write: the
// pipeline stops and nothing more is committed.
func (s *Server) keepLease(ctx context.Context, cancel context.CancelCauseFunc, lh *leaseHolder, stop <-chan struct{}) {
	t := time.NewTicker(s.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if lh.since() < s.cfg.LeaseTTL/3 {
			continue
		}
		cur := lh.get()
		start := time.Now()
		nl, err := s.store.RenewLease(ctx, cur, s.cfg.LeaseTTL)
		if err == nil {
			lh.set(nl, start)
			continue
		}
		if errors.Is(err, sessionstore.ErrLeaseLost) || time.Now().After(cur.ExpiresAt) {
			s.metrics.lost.Inc()
			s.log.Warn("lease lost; stopping write", "upload_id", cur.SessionID, "err", err)
			cancel(fmt.Errorf("proxy: renew lease: %w", err))
			return
		}
	}
}

func (s *Server) releaseLease(ctx context.Context, lh *leaseHolder) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.store.ReleaseLease(cctx, lh.get()); err != nil {
		s.log.Warn("release lease", "upload_id", lh.get().SessionID, "err", err)
		return
	}
	s.metrics.released.Inc()
}

// failReason is the roughy_uploads_failed_total label of a failed write.
func failReason(err error, body *bodyReader) string {
	switch {
	case body.taken.Load() != nil:
		return "taken_over"
	case errors.Is(err, errSlowBody):
		return "slow_body"
	case body.err != nil, errors.Is(err, pipeline.ErrTruncated):
		return "client"
	case errors.Is(err, pipeline.ErrChecksumMismatch), errors.Is(err, pipeline.ErrReprDigestMismatch):
		return "checksum"
	case errors.Is(err, pipeline.ErrTooLarge):
		return "too_large"
	case errors.Is(err, pipeline.ErrStorageFull):
		return "storage_full"
	case errors.Is(err, pipeline.ErrStorage):
		return "storage"
	case errors.Is(err, sessionstore.ErrLeaseLost):
		return "lease_lost"
	case errors.Is(err, sessionstore.ErrUnavailable):
		return "store"
	}
	return "other"
}
