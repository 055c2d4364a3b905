package proxy

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

func errConcat(format string, args ...any) *Error {
	return codeInvalidConcat.withf(format, args...)
}

// createFinal serves a POST with "Upload-Concat: final;…": the partial
// uploads, all complete and of this account, are joined in the sink (S3:
// server-side copies), the result is hashed, and the asset is ready before
// the 201.
func (s *Server) createFinal(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, cc concat, mdRaw string, md metadata) error {
	sh, err := md.shape()
	if err != nil {
		return err
	}
	srcs := make([]pipeline.Upload, 0, len(cc.Final))
	// TUS lets a final list a partial upload more than once: it is then
	// concatenated as often, in the listed order (each sink copies by
	// key, so a source may come back); it is checked once.
	seen := map[string]sessionstore.Session{}
	var total int64
	for _, pid := range cc.Final {
		if p, ok := seen[pid]; ok {
			total += p.Length
			srcs = append(srcs, uploadOf(p))
			continue
		}
		p, err := s.ownSession(ctx, rq, pid)
		if errors.Is(err, sessionstore.ErrNotFound) {
			return errConcat("partial upload %s not found", pid)
		}
		if err != nil {
			return fmt.Errorf("proxy: load partial %s: %w", pid, err)
		}
		if !p.Partial {
			return errConcat("upload %s is not a partial upload (Upload-Concat: partial)", pid)
		}
		if p.Length < 0 || p.Offset != p.Length {
			return errConcat("partial upload %s is not complete", pid)
		}
		if p, err = s.finishIfFull(ctx, p); err != nil {
			return err
		}
		seen[pid] = p
		total += p.Length
		srcs = append(srcs, uploadOf(p))
	}
	if total > pipeline.MaxUploadLength {
		return errUploadTooLarge
	}

	id := apikey.NewID()
	rq.uploadID = id
	now := time.Now().UTC()
	sess := sessionstore.Session{
		ID: id, Account: rq.account, AssetID: id, Length: total, Metadata: mdRaw,
		ConcatOf: cc.Final, ConcatHeader: cc.Raw, NextPart: 1, CreatedAt: now, ExpiresAt: now.Add(s.cfg.UploadExpiry),
	}
	asset := sessionstore.Asset{
		ID: id, Account: rq.account, SessionID: id, Type: sh.Type,
		State: sessionstore.StateUploading, SizeBytes: total,
		ContentType: sh.ContentType, Filename: sh.Filename, Metadata: md,
		StorageKey: storageKey(id), CreatedAt: now,
	}
	if err := s.createUpload(ctx, &sess, asset); err != nil {
		return err
	}
	if err := s.concatInto(ctx, sess, srcs); err != nil {
		// Leave nothing half-built behind; the client retries the POST.
		cctx := context.WithoutCancel(ctx)
		if aerr := s.pipe.Sink().Abort(cctx, uploadOf(sess)); aerr != nil {
			s.log.Warn("free storage of failed concatenation", "upload_id", id, "err", aerr)
		}
		if _, derr := s.store.DeleteUpload(cctx, id); derr != nil {
			s.log.Warn("delete failed concatenation", "upload_id", id, "err", derr)
		}
		s.releaseQuota(cctx, sess.Account, id)
		return err
	}
	a, err := s.store.Asset(ctx, id)
	if err != nil {
		return fmt.Errorf("proxy: reload asset: %w", err)
	}
	rc.Response.Header.Set("Location", s.baseURL(rc)+uploadsPath+"/"+id)
	writeJSON(rc, fasthttp.StatusCreated, &createResponse{SessionID: id, Asset: s.assetJSON(ctx, rc, a)})
	return nil
}

// concatInto builds sess's object from srcs and commits it complete.
func (s *Server) concatInto(ctx context.Context, sess sessionstore.Session, srcs []pipeline.Upload) error {
	lease, err := s.store.AcquireLease(ctx, sess.ID, s.cfg.LeaseTTL, 0)
	if err != nil {
		return fmt.Errorf("proxy: acquire lease: %w", err)
	}
	lh, wctx, release := s.leases.Hold(ctx, lease)
	defer release()

	sink := s.pipe.Sink()
	storage, parts, err := sink.Concat(wctx, uploadOf(sess), srcs)
	if err != nil {
		return fmt.Errorf("proxy: concatenate: %w", err)
	}
	state, sum, err := s.hashConcat(wctx, storageKey(sess.ID), sess.Length, srcs[0])
	if err != nil {
		return err
	}
	if err := s.emitReady(ctx, sess); err != nil {
		return err
	}
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer ccancel()
	_, err = s.store.Commit(cctx, lh.Lease(), sessionstore.Commit{
		ExpectOffset: 0, NewOffset: sess.Length, HashState: state, Storage: storage,
		Parts: parts, Length: -1, Complete: true, SHA256: sum,
	})
	if err != nil {
		return fmt.Errorf("proxy: commit concatenation: %w", err)
	}
	s.settleQuota(ctx, sess.Account, sess.ID, sess.Length)
	s.metrics.completed.Add(1)
	return nil
}

// hashConcat computes a concatenation's SHA-256. SHA-256 states do not
// compose, but the first partial upload's saved state is exactly the
// state after the concatenation's first bytes; the rest of the object is
// read once and hashed from there.
func (s *Server) hashConcat(ctx context.Context, key string, want int64, first pipeline.Upload) ([]byte, string, error) {
	obj, err := s.pipe.Sink().Open(ctx, key)
	if err != nil {
		return nil, "", fmt.Errorf("proxy: open %s: %w", key, err)
	}
	defer obj.Close()
	if obj.Size() != want {
		return nil, "", fmt.Errorf("proxy: concatenation %s has %d bytes, want %d", key, obj.Size(), want)
	}
	h, err := pipeline.ResumeHash(first.HashState)
	from := first.Offset
	if err != nil || from > want {
		// Not usable: hash the whole object.
		h, _ = pipeline.ResumeHash(nil)
		from = 0
	}
	buf := make([]byte, 1<<20)
	r := io.NewSectionReader(obj, from, obj.Size()-from)
	for {
		if err := ctx.Err(); err != nil {
			return nil, "", fmt.Errorf("proxy: hash %s: %w", key, err)
		}
		n, err := r.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, "", fmt.Errorf("proxy: hash %s: %w", key, err)
		}
	}
	state := pipeline.MarshalHash(h)
	return state, hex.EncodeToString(h.Sum(nil)), nil
}
