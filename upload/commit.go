package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
)

// commitTimeout bounds one store commit. Commits run even when the request
// is canceled (shutdown): bytes that are durable should become visible.
const commitTimeout = 15 * time.Second

// committer returns the pipeline's commit function for a write under h:
// each durable prefix is committed with a compare-and-set on *cur's
// offset, fenced by the lease, and *cur becomes the committed session.
// notify, when set, is told each committed offset. ends says the write's
// body ends exactly at the upload's length (its size known): its last
// commit may then complete the upload (completeWith). A body that may run
// past the length fails after its last commit, and a failed write
// completes nothing.
func (s *Service) committer(h *Held, cur *sessionstore.Session, notify func(offset int64), ends bool) pipeline.CommitFunc {
	return func(c context.Context, p pipeline.Progress) (err error) {
		cm := sessionstore.Commit{
			ExpectOffset: cur.Offset, NewOffset: p.Offset, HashState: p.HashState,
			Storage: p.Storage, Parts: p.Parts, Length: -1,
			// Expiry slides with activity: an upload being written does
			// not expire, however long it takes in total.
			ExpiresAt: nextExpiry(s.cfg.UploadExpiry),
			// So does the lease: the keeper skips renewals while commits
			// come often enough.
			ExtendLease: s.cfg.LeaseTTL,
		}
		// The storage's completion is a span of its own beside the
		// commit's, as when the upload completes after its last commit.
		completes := ends && s.completeWith(c, h.Lease(), *cur, p, &cm)
		c, end := s.Tel.Span(c, "commit")
		defer func() { end(err) }()
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(c), commitTimeout)
		defer ccancel()
		start := time.Now()
		ns, err := s.Store.Commit(cctx, h.Lease(), cm)
		s.Tel.Committed(time.Since(start), err)
		if err != nil {
			return fmt.Errorf("upload: commit offset %d: %w", p.Offset, err)
		}
		if completes {
			s.Tel.Completed()
			s.Log.Info("upload complete", "upload_id", ns.ID, "account", ns.Account, "bytes", ns.Offset)
		}
		h.Extended(start, s.cfg.LeaseTTL)
		*cur = ns
		if notify != nil {
			notify(ns.Offset)
		}
		return nil
	}
}

// completeWith makes cm, the commit of progress p to cur under lease l,
// the upload's completing commit when p stores its last byte: the storage
// is completed first (the pipeline calls its commit function only once
// the bytes are durable), then the one commit records the offset, marks
// the upload complete and settles its quota, one store write where there
// were three. It applies to storage without parts (the local file) and
// to a whole upload put with one request (S3's PutObject); otherwise, or
// when completing the storage fails, cm stays a plain commit and Append
// completes the upload after it (complete).
func (s *Service) completeWith(ctx context.Context, l sessionstore.Lease, cur sessionstore.Session, p pipeline.Progress, cm *sessionstore.Commit) bool {
	if cur.Completed || cur.Length < 0 || p.Offset != cur.Length {
		return false
	}
	// The bytes are durable: what completes them must run even if the
	// client went away meanwhile.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	parts := p.Parts
	if !StoragePending(cur) {
		// Parts of earlier writes, or this one's of a multipart upload:
		// Append completes it after the commit, as before.
		if l.Parts > 0 || len(p.Parts) > 0 {
			return false
		}
		if stored, err := s.Store.Parts(ctx, cur.ID); err != nil || len(stored) > 0 {
			return false
		}
	}
	// Else the write stored the whole upload with one request (S3's
	// PutObject): its part, if any, is all there is.
	ctx, end := s.Tel.Span(s.Tel.WithUpload(ctx, cur.ID, cur.Account), "complete")
	sum, err := s.completeStorage(ctx, cur, p, parts)
	var ev *sessionstore.WebhookEvent
	if err == nil {
		ev, err = s.readyEvent(ctx, cur)
	}
	end(err)
	if err != nil {
		return false
	}
	cm.Complete, cm.SHA256, cm.Settle, cm.Event = true, sum, true, ev
	return true
}

// completeStorage completes the storage of cur as p leaves it; it returns
// the upload's SHA-256.
func (s *Service) completeStorage(ctx context.Context, cur sessionstore.Session, p pipeline.Progress, parts []pipeline.Part) (string, error) {
	next := cur
	next.Offset, next.HashState = p.Offset, p.HashState
	if p.Storage != nil {
		next.Storage = p.Storage
	}
	sum, err := pipeline.SumHex(p.HashState)
	if err != nil {
		return "", err
	}
	if err := s.Pipe.Sink().Complete(ctx, s.Describe(next), parts); err != nil {
		return "", err
	}
	return sum, nil
}

// fallBack commits the rewind a TailLostError asks for: the upload goes
// back to the last offset storage still holds, so that the client, told
// to retry, HEADs that offset and sends the lost bytes again. A failed
// rewind leaves cur as it is (the next write tries again).
func (s *Service) fallBack(ctx context.Context, h *Held, cur sessionstore.Session, tl *pipeline.TailLostError) sessionstore.Session {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	ns, err := s.Store.Commit(cctx, h.Lease(), sessionstore.Commit{
		ExpectOffset: cur.Offset, NewOffset: tl.Fallback.Offset, HashState: tl.Fallback.HashState,
		Storage: tl.Fallback.Storage, Length: -1, ExpiresAt: nextExpiry(s.cfg.UploadExpiry), Rewind: true,
	})
	if err != nil {
		s.Log.Warn("upload's tail is gone; rewind failed", "upload_id", cur.ID, "offset", cur.Offset, "err", err)
		return cur
	}
	s.Log.Warn("upload's tail is gone; fell back", "upload_id", cur.ID, "from", cur.Offset, "to", ns.Offset)
	return ns
}

// Finish completes an upload whose bytes are all stored but that was
// not marked complete (a crash between the last commit and completion,
// or a request that set the length to the offset). It takes the lease
// over like an append: with every byte stored, the holder can only be
// completing it (and then lets go of nothing it still needs: its body is
// read) or be dead, as when a node died between its last commit and the
// completion. Without the takeover, a client that resumes right after
// such a kill would see HEAD's offset at the length and stop, and the
// asset would stay uploading. Other uploads are returned as they are.
func (s *Service) Finish(ctx context.Context, sess sessionstore.Session) (sessionstore.Session, error) {
	if sess.Completed || sess.Length < 0 || sess.Offset != sess.Length {
		return sess, nil
	}
	// Bytes the storage still holds outside its parts (an S3 tail left by
	// earlier writes when the last request carried no byte: the draft's
	// empty Upload-Complete: ?1 append) need a part number to become the
	// last part.
	parts := s.Pipe.Sink().PartsFor(s.Describe(sess), 0)
	lease, err := s.leases.Take(ctx, sess.ID, parts, false, NoFence)
	if err != nil {
		return sess, fmt.Errorf("upload: acquire lease to complete: %w", err)
	}
	h, hctx, release := s.leases.Hold(ctx, lease)
	defer release()
	fresh := lease.Session
	if fresh.Completed || fresh.Length < 0 || fresh.Offset != fresh.Length {
		return fresh, nil
	}
	// An empty direct upload may still lack its storage.
	if fresh, err = s.EnsureStorage(hctx, h.Lease(), fresh); err != nil {
		return fresh, err
	}
	if lease.Parts > 0 {
		// A write without a body: the sink turns what it carries into
		// the last part and commits it; the offset does not move.
		cur := fresh
		_, err := s.Pipe.Write(hctx, s.Describe(fresh), pipeline.Chunk{
			Body: eofReader{}, Size: 0,
			Parts:  pipeline.PartRange{First: lease.FirstPart, Count: lease.Parts},
			Commit: s.committer(h, &cur, nil, false),
		})
		if tl, ok := errors.AsType[*pipeline.TailLostError](err); ok {
			cur = s.fallBack(ctx, h, cur, tl)
		}
		if err != nil {
			return cur, fmt.Errorf("upload: store the last part: %w", err)
		}
		fresh = cur
	}
	return s.complete(hctx, h.Lease(), fresh)
}

// readyEvent is the asset.ready event of sess for its completing commit
// to queue (Commit.Event), or nil once queued here, ahead of the commit,
// when the Events cannot hand it to the store (eventBefore). The asset is
// read at verification, once ready: only its identity is needed now.
func (s *Service) readyEvent(ctx context.Context, sess sessionstore.Session) (*sessionstore.WebhookEvent, error) {
	ready := sessionstore.Asset{ID: sess.AssetID, Account: sess.Account, SessionID: sess.ID}
	return eventBefore(ctx, s.Events, sessionstore.EventAssetReady, ready)
}

// eofReader is the body of a write without one.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// complete turns the stored bytes into the final object and marks the
// upload complete (asset ready, SHA-256, probe queued) in one commit.
func (s *Service) complete(ctx context.Context, l sessionstore.Lease, sess sessionstore.Session) (_ sessionstore.Session, err error) {
	ctx, end := s.Tel.Span(s.Tel.WithUpload(ctx, sess.ID, sess.Account), "complete")
	defer func() { end(err) }()
	parts, err := s.Store.Parts(ctx, sess.ID)
	if err != nil {
		return sess, fmt.Errorf("upload: list parts: %w", err)
	}
	if err := s.Pipe.Sink().Complete(ctx, s.Describe(sess), parts); err != nil {
		return sess, fmt.Errorf("upload: complete storage: %w", err)
	}
	sum, err := pipeline.SumHex(sess.HashState)
	if err != nil {
		return sess, fmt.Errorf("upload: final sha256: %w", err)
	}
	ev, err := s.readyEvent(ctx, sess)
	if err != nil {
		return sess, err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	// The quota hold is settled by the same write (Commit.Settle), and the
	// event goes with it (Commit.Event).
	ns, err := s.Store.Commit(cctx, l, sessionstore.Commit{
		ExpectOffset: sess.Offset, NewOffset: sess.Offset, HashState: sess.HashState,
		Length: -1, Complete: true, SHA256: sum, ExpiresAt: nextExpiry(s.cfg.UploadExpiry), Settle: true,
		Event: ev,
	})
	if err != nil {
		return sess, fmt.Errorf("upload: commit completion: %w", err)
	}
	s.Tel.Completed()
	s.Log.Info("upload complete", "upload_id", sess.ID, "account", sess.Account, "bytes", sess.Offset)
	return ns, nil
}

// EnsureStorage makes the storage of sess, a session read under lease l,
// if it is a claimed direct upload without storage yet (StoragePending),
// and commits its state.
func (s *Service) EnsureStorage(ctx context.Context, l sessionstore.Lease, sess sessionstore.Session) (sessionstore.Session, error) {
	if !StoragePending(sess) {
		return sess, nil
	}
	storage, err := s.Pipe.Sink().Create(ctx, s.Describe(sess))
	if err != nil {
		return sess, fmt.Errorf("upload: create storage of direct upload: %w", err)
	}
	if storage == nil {
		// A commit replaces Storage only when non-nil.
		storage = []byte{}
	}
	// A failed commit leaves the storage alone: it may have been applied
	// (a lost reply), and the local sink's Abort would remove the file of
	// the key, whoever made it. The next attempt creates it again (local:
	// truncates the empty file; S3: a new multipart upload).
	ns, err := s.Store.Commit(ctx, l, sessionstore.Commit{
		ExpectOffset: sess.Offset, NewOffset: sess.Offset, HashState: sess.HashState, Storage: storage, Length: -1,
	})
	if err != nil {
		return sess, fmt.Errorf("upload: save storage of direct upload: %w", err)
	}
	return ns, nil
}
