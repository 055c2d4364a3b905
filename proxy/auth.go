package proxy

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// keyCache remembers successful key lookups briefly, so a 64 MiB PATCH
// loop does not ask the store for the key on every chunk. Only hashes are
// kept, never secrets.
type keyCache struct {
	mu      sync.Mutex
	entries map[string]cachedKey
}

type cachedKey struct {
	account string
	expires time.Time
}

// maxCachedKeys bounds the cache; when full, expired entries go, and if
// that is not enough, all of them.
const maxCachedKeys = 4096

func (c *keyCache) get(hash string, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[hash]
	if !ok || now.After(e.expires) {
		return "", false
	}
	return e.account, true
}

func (c *keyCache) put(hash, account string, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]cachedKey{}
	}
	if len(c.entries) >= maxCachedKeys {
		now := time.Now()
		for h, e := range c.entries {
			if now.After(e.expires) {
				delete(c.entries, h)
			}
		}
		if len(c.entries) >= maxCachedKeys {
			clear(c.entries)
		}
	}
	c.entries[hash] = cachedKey{account: account, expires: expires}
}

// bearer extracts the secret of "Authorization: Bearer <secret>".
func bearer(h []byte) (string, bool) {
	const scheme = "bearer "
	if len(h) <= len(scheme) || !bytes.EqualFold(h[:len(scheme)], []byte(scheme)) {
		return "", false
	}
	secret := bytes.TrimSpace(h[len(scheme):])
	if len(secret) == 0 || len(secret) > 256 {
		return "", false
	}
	return string(secret), true
}

// authenticate returns the account of the request's API key. A missing or
// unknown key is errUnauthorized; a store failure is returned as such (a
// 503, never a 401: tus-js-client forgets uploads on a 4xx).
func (s *Server) authenticate(ctx context.Context, rc *fasthttp.RequestCtx) (string, error) {
	secret, ok := bearer(rc.Request.Header.Peek("Authorization"))
	if !ok {
		return "", errUnauthorized
	}
	hash := apikey.Hash(secret)
	now := time.Now()
	if account, ok := s.keys.get(hash, now); ok {
		return account, nil
	}
	k, err := s.store.KeyByHash(ctx, hash)
	if errors.Is(err, sessionstore.ErrNotFound) {
		s.metrics.authFailures.Add(1)
		return "", errUnauthorized
	}
	if err != nil {
		return "", fmt.Errorf("proxy: look up key: %w", err)
	}
	// The store found the key by its hash; compare again in constant time
	// so that no store implementation's lookup can leak timing.
	if subtle.ConstantTimeCompare([]byte(k.Hash), []byte(hash)) != 1 || k.Revoked || k.Account == "" {
		s.metrics.authFailures.Add(1)
		return "", errUnauthorized
	}
	if s.cfg.KeyCacheTTL > 0 {
		s.keys.put(hash, k.Account, now.Add(s.cfg.KeyCacheTTL))
	}
	return k.Account, nil
}
