package proxy

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"

	"github.com/roughy/ingest/sessionstore/redis"
	"github.com/roughy/ingest/upload"
)

// TestQuotaSweepRepairsCrash: holds a crash left behind (a reservation
// whose creation never happened, a completion that was not settled) are
// released or settled by the janitor's sweep; a hold of an upload still in
// progress is kept.
func TestQuotaSweepRepairsCrash(t *testing.T) {
	e := newEnv(t, nil, nil)
	ctx := t.Context()
	live := e.create("acme", 100)
	// A node died between reserving and creating: no session behind it.
	if err := e.store.ReserveQuota(ctx, "acme", "ghost", 1000, sessionstore.QuotaLimits{}); err != nil {
		t.Fatal(err)
	}
	// A node died between completing and settling.
	now := time.Now().UTC()
	done := sessionstore.Session{ID: "done", Account: "acme", Length: 30, Offset: 30, Completed: true,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := e.store.CreateUpload(ctx, done, sessionstore.Asset{}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.ReserveQuota(ctx, "acme", "done", 30, sessionstore.QuotaLimits{}); err != nil {
		t.Fatal(err)
	}
	usage := func() sessionstore.QuotaUsage {
		t.Helper()
		_, u, err := e.store.Quota(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	if got, want := usage(), (sessionstore.QuotaUsage{Uploads: 3, BytesReserved: 1130}); got != want {
		t.Fatalf("before the sweep: usage %+v, want %+v", got, want)
	}
	// Within the grace period nothing is touched: a creation may be
	// between its reservation and its session.
	e.srv.svc.SweepQuota(ctx, time.Now())
	if got, want := usage(), (sessionstore.QuotaUsage{Uploads: 3, BytesReserved: 1130}); got != want {
		t.Fatalf("sweep within the grace: usage %+v, want %+v", got, want)
	}
	e.srv.svc.SweepQuota(ctx, time.Now().Add(2*upload.QuotaSweepGrace))
	if got, want := usage(), (sessionstore.QuotaUsage{BytesStored: 30, Uploads: 1, BytesReserved: 100}); got != want {
		t.Fatalf("after the sweep: usage %+v, want %+v", got, want)
	}
	// The live upload's hold was touched: the next sweep skips it.
	hs, err := e.store.QuotaHolds(ctx, time.Now().Add(-time.Second), 10)
	if err != nil || len(hs) != 0 {
		t.Fatalf("holds older than a second after the sweep: got %+v %v, want none (%s touched)", hs, err, live.SessionID)
	}
}

// TestQuotaRoute: GET /api/v1/quota shows the account's limits (its own,
// else the defaults; null = unlimited) and usage, and needs a key.
func TestQuotaRoute(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.QuotaDefaults = sessionstore.QuotaLimits{Uploads: 5} }, nil)
	if err := e.store.SetQuota(t.Context(), "acme", sessionstore.QuotaLimits{BytesStored: 1 << 30, Uploads: -1, BytesReserved: -1}); err != nil {
		t.Fatal(err)
	}
	e.create("acme", 100)
	r := e.do("GET", quotaPath, hdr("Authorization", "Bearer "+e.keys["acme"]), nil)
	want := `{"account":"acme","limits":{"bytes_stored":1073741824,"uploads":5,"bytes_reserved":null},` +
		`"usage":{"bytes_stored":0,"uploads":1,"bytes_reserved":100}}`
	if r.status != http.StatusOK || string(r.body) != want {
		t.Fatalf("GET %s: got %d %s, want 200 %s", quotaPath, r.status, r.body, want)
	}
	if r := e.do("GET", quotaPath, nil, nil); r.status != http.StatusUnauthorized {
		t.Fatalf("GET %s without a key: got %d, want 401", quotaPath, r.status)
	}
}

// newRedisEnv is newEnv over a Redis store (the fleet's) on a redis-server
// of its own, with keys for the same accounts.
func newRedisEnv(t *testing.T, cfgMod func(*Config)) *env {
	t.Helper()
	return newRedisEnvOn(t, testsvc.StartRedis(t), cfgMod, nil)
}

// newRedisEnvOn is a server (a node of its own) on the Redis at url;
// sink, when set, is the storage it writes to instead of its own (nodes
// of one fleet share it).
func newRedisEnvOn(t *testing.T, url string, cfgMod func(*Config), sink pipeline.Sink) *env {
	t.Helper()
	rs, err := redis.New(t.Context(), url)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	// Registered before newEnv: cleanups run last first, so the store
	// closes after the server has shut down.
	t.Cleanup(func() { rs.Close() })
	var wrapSink func(pipeline.Sink) pipeline.Sink
	if sink != nil {
		wrapSink = func(pipeline.Sink) pipeline.Sink { return sink }
	}
	e := newEnvSink(t, cfgMod, func(sessionstore.Store) sessionstore.Store { return rs }, wrapSink)
	for account := range e.keys {
		secret, k := apikey.New(account)
		if err := rs.CreateKey(context.Background(), k); err != nil {
			t.Fatalf("CreateKey: %v", err)
		}
		e.keys[account] = secret
	}
	return e
}

// onBothStores runs fn on a server over the embedded store and on one
// over Redis: quotas are checked by the store, once in Go, once in Lua.
func onBothStores(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Run("bbolt", func(t *testing.T) { fn(t, newEnv(t, nil, nil)) })
	t.Run("redis", func(t *testing.T) { fn(t, newRedisEnv(t, nil)) })
}

func (e *env) setQuota(account string, l sessionstore.QuotaLimits) {
	e.t.Helper()
	if err := e.store.SetQuota(context.Background(), account, l); err != nil {
		e.t.Fatalf("SetQuota: %v", err)
	}
}

func (e *env) wantUsage(account, what string, want sessionstore.QuotaUsage) {
	e.t.Helper()
	_, got, err := e.store.Quota(context.Background(), account)
	if err != nil {
		e.t.Fatalf("%s: Quota: %v", what, err)
	}
	if got != want {
		e.t.Fatalf("%s: usage got %+v, want %+v", what, got, want)
	}
}

// wantQuotaRefused checks a 403 quota_exceeded naming limit, as TUS JSON
// or as the draft's problem.
func wantQuotaRefused(t *testing.T, what string, r resp, limit string) {
	t.Helper()
	var b struct {
		Code   string
		Detail string
		Error  struct{ Code, Message string }
	}
	// A body that is not JSON leaves code empty: the check below fails
	// and shows the body.
	_ = json.Unmarshal(r.body, &b)
	code, msg := b.Error.Code, b.Error.Message
	if code == "" {
		code, msg = b.Code, b.Detail
	}
	if r.status != http.StatusForbidden || code != "quota_exceeded" || !strings.Contains(msg, `"`+limit+`"`) {
		t.Fatalf("%s: got %d %s, want 403 quota_exceeded naming %q", what, r.status, r.body, limit)
	}
}

// draftDo sends a request of the IETF draft (interop 8) as account.
func (e *env) draftDo(method, target, account string, body []byte, kv ...string) resp {
	e.t.Helper()
	h := hdr(kv...)
	h.Set("Upload-Draft-Interop-Version", "8")
	h.Set("Authorization", "Bearer "+e.keys[account])
	return e.do(method, target, h, body)
}

// draftCreate makes an upload over the draft without content (?0) and
// returns its URL.
func (e *env) draftCreate(account string, kv ...string) string {
	e.t.Helper()
	r := e.draftDo("POST", uploadsPath, account, []byte{}, append([]string{"Upload-Complete", "?0", "Content-Type", "video/mp4"}, kv...)...)
	if r.status != http.StatusCreated || r.h.Get("Location") == "" {
		e.t.Fatalf("draft creation: got %d %s, want 201 with Location", r.status, r.body)
	}
	return r.h.Get("Location")
}

// draftAppend appends chunk at offset over the draft; done is ?1 or ?0.
func (e *env) draftAppend(account, loc string, offset int, chunk []byte, done string, kv ...string) resp {
	e.t.Helper()
	return e.draftDo("PATCH", loc, account, chunk, append([]string{"Upload-Complete", done,
		"Upload-Offset", strconv.Itoa(offset), "Content-Type", "application/partial-upload"}, kv...)...)
}

// TestQuotaDeferredLengthBecomesKnown: an upload created without a length
// reserves its length when a request makes it known, over either
// protocol: a TUS PATCH with Upload-Length, a draft append that ends the
// upload (?1 with Content-Length) or that carries Upload-Length. A length
// past the quota is refused before anything is stored or set; the length
// that fits, exactly the limit, completes.
func TestQuotaDeferredLengthBecomesKnown(t *testing.T) {
	const limit = 1 << 20
	big, data := make([]byte, 3*limit), make([]byte, limit)
	rand.Read(big)
	rand.Read(data)
	tests := []struct {
		name string
		// create makes an upload without a length and returns its URL.
		create func(e *env) string
		// tooBig makes the length 3 MiB (with or without its bytes).
		tooBig func(e *env, loc string) resp
		// fill sends data, the whole upload, and expects it complete.
		fill func(e *env, loc string) resp
		// deferred reports whether the upload has no length yet.
		deferred func(e *env, loc string) bool
	}{{
		name:   "tus Upload-Length with the bytes",
		create: tusDeferred,
		tooBig: func(e *env, loc string) resp {
			return e.patch("acme", loc, 0, big, "Upload-Length", strconv.Itoa(len(big)))
		},
		fill: tusFill(data), deferred: tusIsDeferred,
	}, {
		name:   "tus Upload-Length alone",
		create: tusDeferred,
		tooBig: func(e *env, loc string) resp {
			return e.patch("acme", loc, 0, []byte{}, "Upload-Length", strconv.Itoa(len(big)))
		},
		fill: tusFill(data), deferred: tusIsDeferred,
	}, {
		name:   "draft append ?1 with Content-Length",
		create: func(e *env) string { return e.draftCreate("acme") },
		tooBig: func(e *env, loc string) resp { return e.draftAppend("acme", loc, 0, big, "?1") },
		fill:   draftFill(data), deferred: draftIsDeferred,
	}, {
		name:   "draft append ?0 with Upload-Length",
		create: func(e *env) string { return e.draftCreate("acme") },
		tooBig: func(e *env, loc string) resp {
			return e.draftAppend("acme", loc, 0, []byte{}, "?0", "Upload-Length", strconv.Itoa(len(big)))
		},
		fill: draftFill(data), deferred: draftIsDeferred,
	}}
	onBothStores(t, func(t *testing.T, e *env) {
		e.setQuota("acme", sessionstore.QuotaLimits{BytesStored: limit, Uploads: -1, BytesReserved: -1})
		for _, tt := range tests {
			loc := tt.create(e)
			e.wantUsage("acme", tt.name+": created", sessionstore.QuotaUsage{Uploads: 1})
			wantQuotaRefused(t, tt.name, tt.tooBig(e, loc), sessionstore.QuotaBytesStored)
			e.wantUsage("acme", tt.name+": refused", sessionstore.QuotaUsage{Uploads: 1})
			if !tt.deferred(e, loc) {
				t.Fatalf("%s: after the refusal the upload is not as it was (length set or bytes stored)", tt.name)
			}
			if r := tt.fill(e, loc); r.status/100 != 2 {
				t.Fatalf("%s: the whole upload at the limit: got %d %s, want it complete", tt.name, r.status, r.body)
			}
			e.wantReady("acme", loc[strings.LastIndexByte(loc, '/')+1:], data)
			e.wantUsage("acme", tt.name+": completed", sessionstore.QuotaUsage{BytesStored: limit})
			// Free the account for the next case.
			if r := e.do("DELETE", loc, e.tusHdr("acme"), nil); r.status != http.StatusNoContent {
				t.Fatalf("DELETE: got %d %s", r.status, r.body)
			}
			e.wantUsage("acme", tt.name+": deleted", sessionstore.QuotaUsage{})
		}
	})
}

func tusDeferred(e *env) string { return e.create("acme", -1).Location }

func tusFill(data []byte) func(e *env, loc string) resp {
	return func(e *env, loc string) resp {
		return e.patch("acme", loc, 0, data, "Upload-Length", strconv.Itoa(len(data)))
	}
}

func tusIsDeferred(e *env, loc string) bool {
	r := e.head("acme", loc)
	return r.status == http.StatusOK && r.h.Get("Upload-Offset") == "0" && r.h.Get("Upload-Defer-Length") == "1" &&
		r.h.Get("Upload-Length") == ""
}

func draftFill(data []byte) func(e *env, loc string) resp {
	return func(e *env, loc string) resp { return e.draftAppend("acme", loc, 0, data, "?1") }
}

func draftIsDeferred(e *env, loc string) bool {
	r := e.draftDo("HEAD", loc, "acme", nil)
	return r.status == http.StatusNoContent && r.h.Get("Upload-Offset") == "0" && r.h.Get("Upload-Complete") == "?0" &&
		r.h.Get("Upload-Length") == ""
}

// TestQuotaRefusalHoldsNothing: a request refused, by the quota or by the
// checks made before anything is reserved (length, offset), leaves the
// account's usage as it was, over either protocol: no upload counted, no
// byte reserved. A reservation is only ever grown for a request that
// goes on to write.
func TestQuotaRefusalHoldsNothing(t *testing.T) {
	onBothStores(t, func(t *testing.T, e *env) {
		e.setQuota("acme", sessionstore.QuotaLimits{BytesStored: 1000, Uploads: 2, BytesReserved: -1})
		e.create("acme", 600)
		want := sessionstore.QuotaUsage{Uploads: 1, BytesReserved: 600}
		refused := func(what string, r resp, status int) {
			t.Helper()
			if r.status != status {
				t.Fatalf("%s: got %d %s, want %d", what, r.status, r.body, status)
			}
			e.wantUsage("acme", what, want)
		}
		post := func(kv ...string) resp {
			return e.do("POST", uploadsPath, e.tusHdr("acme", append([]string{
				"Upload-Metadata", md("type", "video", "content_type", "video/mp4", "filename", "q.mp4")}, kv...)...), nil)
		}
		refused("TUS creation past bytes_stored", post("Upload-Length", "401"), http.StatusForbidden)
		refused("draft creation with Upload-Length past bytes_stored", e.draftDo("POST", uploadsPath, "acme", []byte{},
			"Upload-Complete", "?0", "Content-Type", "video/mp4", "Upload-Length", "401"), http.StatusForbidden)
		refused("draft creation with content past bytes_stored", e.draftDo("POST", uploadsPath, "acme", make([]byte, 401),
			"Upload-Complete", "?1", "Content-Type", "video/mp4"), http.StatusForbidden)

		loc := tusDeferred(e)
		want = sessionstore.QuotaUsage{Uploads: 2, BytesReserved: 600}
		e.wantUsage("acme", "deferred creation", want)
		refused("creation past uploads", post("Upload-Length", "0"), http.StatusForbidden)
		refused("TUS PATCH past bytes_stored", e.patch("acme", loc, 0, make([]byte, 401)), http.StatusForbidden)
		refused("TUS PATCH with Upload-Length past bytes_stored", e.patch("acme", loc, 0, make([]byte, 10), "Upload-Length", "401"),
			http.StatusForbidden)
		refused("TUS PATCH whose body passes its Upload-Length", e.patch("acme", loc, 0, make([]byte, 20), "Upload-Length", "10"),
			http.StatusRequestEntityTooLarge)
		refused("TUS PATCH at the wrong offset", e.patch("acme", loc, 5, make([]byte, 10), "Upload-Length", "15"), http.StatusConflict)
		refused("draft append past bytes_stored", e.draftAppend("acme", loc, 0, make([]byte, 401), "?1"), http.StatusForbidden)
		refused("draft append whose content passes its Upload-Length",
			e.draftAppend("acme", loc, 0, make([]byte, 20), "?0", "Upload-Length", "10"), http.StatusRequestEntityTooLarge)
		refused("draft append whose Upload-Length is not its content's",
			e.draftAppend("acme", loc, 0, make([]byte, 20), "?1", "Upload-Length", "10"), http.StatusBadRequest)
		refused("draft append at the wrong offset", e.draftAppend("acme", loc, 5, make([]byte, 10), "?1"), http.StatusConflict)
		if !tusIsDeferred(e, loc) {
			t.Fatal("after the refusals the upload is not as created (length set or bytes stored)")
		}

		// What fits, exactly up to bytes_stored, is stored.
		data := make([]byte, 400)
		rand.Read(data)
		if r := e.patch("acme", loc, 0, data, "Upload-Length", "400"); r.status != http.StatusNoContent {
			t.Fatalf("PATCH of the 400 bytes that fit: got %d %s, want 204", r.status, r.body)
		}
		e.wantReady("acme", loc[strings.LastIndexByte(loc, '/')+1:], data)
		e.wantUsage("acme", "completed at the limit", sessionstore.QuotaUsage{BytesStored: 400, Uploads: 1, BytesReserved: 600})
	})
}
