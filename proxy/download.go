package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// Download tokens are "<unix expiry>.<base64url HMAC-SHA256>" over the
// asset id and the expiry, so neither can be changed.

func (s *Server) downloadMAC(id string, exp int64) []byte {
	m := hmac.New(sha256.New, s.sign)
	m.Write([]byte("roughy-download\x00"))
	m.Write([]byte(id))
	m.Write([]byte{0})
	m.Write(strconv.AppendInt(nil, exp, 10))
	return m.Sum(nil)
}

// signDownload returns a token for id valid until exp.
func (s *Server) signDownload(id string, exp time.Time) string {
	e := exp.Unix()
	return strconv.FormatInt(e, 10) + "." + base64.RawURLEncoding.EncodeToString(s.downloadMAC(id, e))
}

var errForbidden = errorf(fasthttp.StatusForbidden, "invalid_token", "the download link is invalid or expired")

// verifyDownload checks a token for id at now.
func (s *Server) verifyDownload(id, token string, now time.Time) error {
	es, mac, ok := strings.Cut(token, ".")
	if !ok {
		return errForbidden
	}
	exp, err := parseInt(es)
	if err != nil {
		return errForbidden
	}
	got, err := base64.RawURLEncoding.DecodeString(mac)
	if err != nil || !hmac.Equal(got, s.downloadMAC(id, exp)) {
		return errForbidden
	}
	if now.Unix() >= exp {
		return errForbidden
	}
	return nil
}

// byteRange is a satisfiable single range.
type byteRange struct{ start, length int64 }

var errRangeUnsatisfiable = errors.New("proxy: range not satisfiable")

// parseRange reads a Range header for an object of size bytes. ok false
// means "serve the whole object" (no header, a syntax it ignores, or
// several ranges); errRangeUnsatisfiable means 416.
func parseRange(h string, size int64) (r byteRange, ok bool, err error) {
	spec, found := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return r, false, nil
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return r, false, nil
	}
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)
	if first == "" {
		// Suffix range: the last n bytes.
		n, perr := parseInt(last)
		if perr != nil {
			return r, false, nil
		}
		if n == 0 || size == 0 {
			return r, false, errRangeUnsatisfiable
		}
		n = min(n, size)
		return byteRange{start: size - n, length: n}, true, nil
	}
	start, perr := parseInt(first)
	if perr != nil {
		return r, false, nil
	}
	end := size - 1
	if last != "" {
		e, perr := parseInt(last)
		if perr != nil || e < start {
			return r, false, nil
		}
		end = min(e, size-1)
	}
	if start >= size {
		return r, false, errRangeUnsatisfiable
	}
	return byteRange{start: start, length: end - start + 1}, true, nil
}

// objectBody streams a section of an object and closes it when fasthttp
// is done with the response.
type objectBody struct {
	*io.SectionReader
	obj pipeline.Object
}

func (b objectBody) Close() error { return b.obj.Close() }

// download serves GET/HEAD /sign/assets/uploads/{id}?token=…: the bytes of
// a ready asset in the embedded default (S3 mode hands out presigned URLs).
func (s *Server) download(rc *fasthttp.RequestCtx, rq *request, id string) {
	s.serveRead(rc, rq, func(ctx context.Context) error { return s.serveDownload(ctx, rc, id) })
}

func (s *Server) serveDownload(ctx context.Context, rc *fasthttp.RequestCtx, id string) error {
	if !validID(id) {
		return errForbidden
	}
	if err := s.verifyDownload(id, string(rc.QueryArgs().Peek("token")), time.Now()); err != nil {
		return err
	}
	a, err := s.store.Asset(ctx, id)
	if errors.Is(err, sessionstore.ErrNotFound) || err == nil && (a.Deleted || a.State != sessionstore.StateReady) {
		return errNotFound
	}
	if err != nil {
		return fmt.Errorf("proxy: load asset: %w", err)
	}
	key := a.StorageKey
	if key == "" {
		key = storageKey(a.ID)
	}
	obj, err := s.pipe.Sink().Open(ctx, key)
	if err != nil {
		return fmt.Errorf("proxy: open %s: %w", key, err)
	}
	size := obj.Size()
	h := &rc.Response.Header
	h.Set("Accept-Ranges", "bytes")
	h.Set("Cache-Control", "private, max-age=300")
	if a.SHA256 != "" {
		h.Set("ETag", `"`+a.SHA256+`"`)
	}
	ct := a.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.SetContentType(ct)
	status, r := fasthttp.StatusOK, byteRange{0, size}
	if rh := rc.Request.Header.Peek("Range"); rh != nil {
		br, ok, rerr := parseRange(string(rh), size)
		switch {
		case rerr != nil:
			obj.Close()
			h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
			return errorf(fasthttp.StatusRequestedRangeNotSatisfiable, "range_not_satisfiable", "the requested range is outside the object")
		case ok:
			status, r = fasthttp.StatusPartialContent, br
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", br.start, br.start+br.length-1, size))
		}
	}
	rc.SetStatusCode(status)
	if rc.IsHead() {
		obj.Close()
		h.SetContentLength(int(r.length))
		return nil
	}
	rc.SetBodyStream(objectBody{io.NewSectionReader(obj, r.start, r.length), obj}, int(r.length))
	return nil
}
