package proxy

import (
	"context"
	"fmt"

	"github.com/valyala/fasthttp"
)

func errConcat(format string, args ...any) *Error {
	return codeInvalidConcat.withf(format, args...)
}

// createFinal serves a POST with "Upload-Concat: final;…": the partial
// uploads, all complete and of this account, are joined
// (upload.Service.Concat, through uploads.create), and the asset is
// ready before the 201.
func (t tusProtocol) createFinal(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, c createIntent) error {
	if err := c.setShape(false); err != nil {
		return err
	}
	sess, _, err := t.uploads.create(ctx, rq, c)
	if err != nil {
		return err
	}
	a, err := t.store.Asset(ctx, sess.ID)
	if err != nil {
		return fmt.Errorf("proxy: reload asset: %w", err)
	}
	rc.Response.Header.Set("Location", t.srv.baseURL(rc)+uploadsPath+"/"+sess.ID)
	writeJSON(rc, fasthttp.StatusCreated, &createResponse{SessionID: sess.ID, Asset: t.srv.assetJSON(ctx, rc, a)})
	return nil
}
