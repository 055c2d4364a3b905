package tusclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// StatusError is an answer of the server with another status than the
// request expects.
type StatusError struct {
	// Method is the request's (PATCH, HEAD, …).
	Method string
	// Op names the step in messages ("create upload", "PATCH at 0", …).
	Op     string
	Status int
	// Body is the answer's body (up to 1 MiB).
	Body string
	// RetryAfter is the answer's Retry-After in seconds (0: none).
	RetryAfter time.Duration
	name       string
}

// Error shows Roughy's error code and message when the body is its JSON
// error, else the start of the body.
func (e *StatusError) Error() string {
	msg := strings.TrimSpace(e.Body)
	var j struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(msg), &j) == nil && j.Error.Code != "" {
		msg = j.Error.Code + ": " + j.Error.Message
	}
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	name := e.name
	if name == "" {
		name = "tusclient"
	}
	return fmt.Sprintf("%s: %s: HTTP %d %s", name, e.Op, e.Status, msg)
}

// ErrBadOffset is wrapped by the errors about an Upload-Offset in an
// answer that is no number or not where the request could have left it.
var ErrBadOffset = errors.New("bad Upload-Offset")

// permanent marks an error that no retry can fix; its message is the
// wrapped error's.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as one that Retry does not try again.
func Permanent(err error) error { return permanent{err} }

// Retryable reports whether a request that failed with err may succeed if
// tried again: network errors, 5xx, 409 (offset moved), 423 (locked), 429
// and 460 (checksum mismatch: the bytes were damaged on the way).
func Retryable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	if _, ok := errors.AsType[permanent](err); ok {
		return false
	}
	if se, ok := errors.AsType[*StatusError](err); ok {
		switch {
		case se.Status >= 500, se.Status == http.StatusConflict, se.Status == http.StatusLocked,
			se.Status == http.StatusTooManyRequests, se.Status == 460:
			return true
		}
		return false
	}
	return true // transport errors: refused, reset, timeouts
}

// Gone reports whether the upload no longer exists for us (404, 410, 403),
// so that a stored upload URL should be forgotten and the upload started
// over.
func Gone(err error) bool {
	se, ok := errors.AsType[*StatusError](err)
	return ok && (se.Status == http.StatusNotFound || se.Status == http.StatusGone || se.Status == http.StatusForbidden)
}
