package proxy

import (
	"context"
	"fmt"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

func errConcat(format string, args ...any) *Error {
	return codeInvalidConcat.withf(format, args...)
}

// createFinal serves a POST with "Upload-Concat: final;…": the partial
// uploads, all complete and of this account, are joined
// (upload.Service.Concat), and the asset is ready before the 201.
func (s *Server) createFinal(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, cc concat, mdRaw string, md metadata) error {
	sh, err := md.shape()
	if err != nil {
		return err
	}
	id := apikey.NewID()
	rq.uploadID = id
	now := time.Now().UTC()
	sess := sessionstore.Session{
		ID: id, Account: rq.account, AssetID: id, Metadata: mdRaw,
		ConcatOf: cc.Final, ConcatHeader: cc.Raw, NextPart: 1, CreatedAt: now, ExpiresAt: now.Add(s.cfg.UploadExpiry),
	}
	asset := sessionstore.Asset{
		ID: id, Account: rq.account, SessionID: id, Type: sh.Type,
		State:       sessionstore.StateUploading,
		ContentType: sh.ContentType, Filename: sh.Filename, Metadata: md,
		StorageKey: storageKey(id), CreatedAt: now,
	}
	if err := s.svc.Concat(ctx, &sess, asset); err != nil {
		return httpError(err)
	}
	a, err := s.store.Asset(ctx, id)
	if err != nil {
		return fmt.Errorf("proxy: reload asset: %w", err)
	}
	rc.Response.Header.Set("Location", s.baseURL(rc)+uploadsPath+"/"+id)
	writeJSON(rc, fasthttp.StatusCreated, &createResponse{SessionID: id, Asset: s.assetJSON(ctx, rc, a)})
	return nil
}
