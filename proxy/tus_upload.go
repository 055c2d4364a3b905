package proxy

import (
	"context"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
)

// head serves HEAD: where to resume.
func (t tusProtocol) head(ctx context.Context, rc *fasthttp.RequestCtx, rq *request, id string) error {
	sess, err := t.offset(ctx, rq, id)
	if err != nil {
		return err
	}
	h := &rc.Response.Header
	h.Set("Cache-Control", "no-store")
	h.Set("Upload-Offset", strconv.FormatInt(sess.Offset, 10))
	if sess.Length >= 0 {
		h.Set("Upload-Length", strconv.FormatInt(sess.Length, 10))
	} else {
		h.Set("Upload-Defer-Length", "1")
	}
	if sess.Metadata != "" {
		h.Set("Upload-Metadata", sess.Metadata)
	}
	if !sess.Completed {
		h.Set("Upload-Expires", sess.ExpiresAt.UTC().Format(httpTime))
	}
	switch {
	case sess.Partial:
		h.Set("Upload-Concat", "partial")
	case sess.ConcatHeader != "":
		// As received: the client compares it with what it sent.
		h.Set("Upload-Concat", sess.ConcatHeader)
	case len(sess.ConcatOf) > 0:
		// Stored before the header was kept: its partials' URLs.
		base := t.srv.baseURL(rc)
		var b strings.Builder
		b.WriteString("final;")
		for i, p := range sess.ConcatOf {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(base + uploadsPath + "/" + p)
		}
		h.Set("Upload-Concat", b.String())
	}
	rc.SetStatusCode(fasthttp.StatusOK)
	return nil
}
