// Package apikey makes and hashes Roughy API keys ("rk_live_…"). Secrets
// are shown once and stored only as their SHA-256.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/roughy/ingest/sessionstore"
)

// Prefix starts every secret.
const Prefix = "rk_live_"

var enc = base32.StdEncoding.WithPadding(base32.NoPadding)

// Hash returns the stored form of a secret: hex SHA-256. A key is a
// 160-bit random secret, so a fast hash is enough (no password stretching).
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	// Encoded in place: every authenticated request hashes its key, and
	// the string is then the encoding's only allocation.
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// New makes a key for account and returns the secret (to print once) and
// the record to store.
func New(account string) (string, sessionstore.Key) {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	secret := Prefix + strings.ToLower(enc.EncodeToString(b[:]))
	return secret, Record(account, secret)
}

// Record is the stored form of a given secret (static ROUGHY_API_KEYS).
func Record(account, secret string) sessionstore.Key {
	h := Hash(secret)
	return sessionstore.Key{
		ID:        "key_" + h[:16],
		Account:   account,
		Hash:      h,
		Prefix:    secret[:min(len(secret), len(Prefix)+4)],
		CreatedAt: time.Now().UTC(),
	}
}

// NewID returns a UUIDv7 (time-ordered) for sessions and assets.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }
