package sessionstore

import (
	"errors"
	"time"
)

// StateWaiting is the state of a direct upload's asset before its TUS
// upload is created: the asset id is known to the backend that
// minted the URL, no byte exists yet.
const StateWaiting = "waiting"

// Refusals of ClaimDirectUpload (besides ErrNotFound and ErrExists).
var (
	// ErrRevoked: the direct upload was revoked by its account.
	ErrRevoked = errors.New("sessionstore: direct upload revoked")
	// ErrDirectExpired: the direct upload's creation deadline passed
	// before an upload was created with it.
	ErrDirectExpired = errors.New("sessionstore: direct upload expired")
)

// DirectUpload is a one-upload grant minted with an API key (POST
// /api/v1/direct-uploads) for a client that holds no key. Its ID is also
// the id of the session and the asset it creates, so "one upload" is the
// store's own uniqueness of that id.
type DirectUpload struct {
	ID      string
	Account string
	// Type is the asset type the upload must have ("video" or "audio").
	Type string
	// MaxSize caps Upload-Length (0: only the server's 50 GiB).
	MaxSize     int64
	Filename    string
	ContentType string
	// Metadata is merged into the upload's metadata (it wins over the
	// client's).
	Metadata map[string]string
	// AllowedOrigins are the browser origins CORS admits (empty: the
	// server's --cors-origins).
	AllowedOrigins []string
	// Secret keys the HMAC of the URL's token. It never leaves the store
	// and the node that verifies: every node of a fleet can check a token
	// without a key shared between nodes.
	Secret    []byte
	CreatedAt time.Time
	// ExpiresAt bounds the creation only; once created, the upload's own
	// expiry applies.
	ExpiresAt time.Time
	// Created is set when the upload was created with it, by the claim
	// Claim ("" for a grant claimed by a version that did not record it).
	Created bool
	Claim   string
	Revoked bool
}
