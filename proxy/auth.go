package proxy

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// keyCache remembers successful key lookups briefly, so a 64 MiB PATCH
// loop does not ask the store for the key on every chunk. Only hashes are
// kept, never secrets. Revocations evict entries at once (see
// RunKeyRevocations); gen makes a lookup that raced an eviction not cache
// its stale answer.
type keyCache struct {
	mu      sync.Mutex
	entries map[string]cachedKey
	gen     uint64
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

// generation is taken before a store lookup and handed to put.
func (c *keyCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put caches a lookup made at generation gen, unless an eviction came
// since: the key may have been revoked after the store answered.
func (c *keyCache) put(hash, account string, expires time.Time, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
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

// evict forgets hash ("" = every key).
func (c *keyCache) evict(hash string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if hash == "" {
		clear(c.entries)
	} else {
		delete(c.entries, hash)
	}
}

// staticKeys are the keys of --api-keys, by hash. They are checked in
// memory before the store, so they keep working whatever the store holds
// (a Redis that came back empty). The map is replaced, never changed:
// readers load it without a lock.
type staticKeys struct {
	live atomic.Pointer[map[string]string] // hash → account
	mu   sync.Mutex                        // serializes replacements
}

func (k *staticKeys) account(hash string) (string, bool) {
	m := k.live.Load()
	if m == nil {
		return "", false
	}
	a, ok := (*m)[hash]
	return a, ok
}

// drop removes the keys whose hashes revoked says; they stay refused until
// the process restarts.
func (k *staticKeys) drop(revoked func(hash string) bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.live.Load()
	if old == nil {
		return
	}
	m := make(map[string]string, len(*old))
	for h, a := range *old {
		if !revoked(h) {
			m[h] = a
		}
	}
	k.live.Store(&m)
}

// keyAuth is the API key authenticator (authKey): a bearer key, looked
// up in the static keys, then the cache, then the store.
type keyAuth struct {
	store sessionstore.Keys
	// keys are the static keys (Config.StaticKeys), ttl the cache's
	// (Config.KeyCacheTTL).
	keys   []sessionstore.Key
	ttl    time.Duration
	failed prometheus.Counter // roughy_auth_failures_total
	log    *slog.Logger
	cache  keyCache
	static staticKeys
}

func newKeyAuth(store sessionstore.Keys, keys []sessionstore.Key, ttl time.Duration, failed prometheus.Counter, log *slog.Logger) *keyAuth {
	a := &keyAuth{store: store, keys: keys, ttl: ttl, failed: failed, log: log}
	static := make(map[string]string, len(keys))
	for _, k := range keys {
		static[k.Hash] = k.Account
	}
	a.static.live.Store(&static)
	return a
}

// SeedStaticKeys writes the static keys to the store (so that `roughy keys
// list` shows them; already stored ones are left as they are) and stops
// accepting those the store holds as revoked. serve calls it at start;
// readyz calls it again when the store lost its data.
func (s *Server) SeedStaticKeys(ctx context.Context) error { return s.authn.key.seed(ctx) }

func (a *keyAuth) seed(ctx context.Context) error {
	for _, k := range a.keys {
		if err := a.store.CreateKey(ctx, k); err != nil && !errors.Is(err, sessionstore.ErrExists) {
			return fmt.Errorf("proxy: store static key of %s: %w", k.Account, err)
		}
	}
	return a.dropRevokedStatic(ctx)
}

// dropRevokedStatic stops accepting the static keys the store holds as
// revoked (`roughy keys revoke` of a static key).
func (a *keyAuth) dropRevokedStatic(ctx context.Context) error {
	if len(a.keys) == 0 {
		return nil
	}
	keys, err := a.store.Keys(ctx)
	if err != nil {
		return fmt.Errorf("proxy: list keys: %w", err)
	}
	revoked := map[string]bool{}
	for _, k := range keys {
		if k.Revoked {
			revoked[k.Hash] = true
		}
	}
	a.static.drop(func(h string) bool { return revoked[h] })
	return nil
}

// RunKeyRevocations evicts each key the moment any node or `roughy keys
// revoke` revokes it, from the cache and from the static keys, until ctx
// ends. Without it a revoked key keeps working for up to KeyCacheTTL.
func (s *Server) RunKeyRevocations(ctx context.Context) { s.authn.key.watch(ctx) }

func (a *keyAuth) watch(ctx context.Context) {
	err := a.store.WatchKeyRevocations(ctx, func(hash string) {
		a.cache.evict(hash)
		if hash != "" {
			a.static.drop(func(h string) bool { return h == hash })
			return
		}
		// Revocations may have been missed while the subscription was
		// down; the cache is empty now, the static keys are checked.
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := a.dropRevokedStatic(cctx); err != nil && ctx.Err() == nil {
			a.log.Warn("proxy: check static keys for revocations", "err", err)
		}
	})
	if err != nil {
		a.log.Error("proxy: key revocations are not watched: revoked keys work until their cache entry expires", "err", err)
	}
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

// signIn is the principal of the request's API key: its account, with
// no policy (a key may do all its account may).
func (a *keyAuth) signIn(ctx context.Context, rc *fasthttp.RequestCtx) (*principal, error) {
	account, err := a.authenticate(ctx, rc)
	if err != nil {
		return nil, err
	}
	return &principal{account: account}, nil
}

// authenticate returns the account of the request's API key. A missing or
// unknown key is errUnauthorized; a store failure is returned as such (a
// 503, never a 401: tus-js-client forgets uploads on a 4xx).
func (a *keyAuth) authenticate(ctx context.Context, rc *fasthttp.RequestCtx) (string, error) {
	secret, ok := bearer(rc.Request.Header.Peek("Authorization"))
	if !ok {
		return "", errUnauthorized
	}
	hash := apikey.Hash(secret)
	// A map lookup by hash leaks no more than the store's lookup does.
	if account, ok := a.static.account(hash); ok {
		return account, nil
	}
	now := time.Now()
	if account, ok := a.cache.get(hash, now); ok {
		return account, nil
	}
	gen := a.cache.generation()
	k, err := a.store.KeyByHash(ctx, hash)
	if errors.Is(err, sessionstore.ErrNotFound) {
		a.failed.Add(1)
		return "", errUnauthorized
	}
	if err != nil {
		return "", fmt.Errorf("proxy: look up key: %w", err)
	}
	// The store found the key by its hash; compare again in constant time
	// so that no store implementation's lookup can leak timing.
	if subtle.ConstantTimeCompare([]byte(k.Hash), []byte(hash)) != 1 || k.Revoked || k.Account == "" {
		a.failed.Add(1)
		return "", errUnauthorized
	}
	if a.ttl > 0 {
		a.cache.put(hash, k.Account, now.Add(a.ttl), gen)
	}
	return k.Account, nil
}
