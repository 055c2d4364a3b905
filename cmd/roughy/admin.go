package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// The embedded store (bbolt) is opened by one process at a time, so while
// `roughy serve` runs, `roughy keys` cannot open it. serve therefore
// answers key commands on a Unix socket in the data dir, readable only by
// the user the server runs as (the same protection as the store file and
// dev-api-key beside it), and `roughy keys` uses that socket when a server
// answers on it. Only key records cross it: a new key's secret is made and
// printed by the CLI, the server stores its hash.

// adminSocketName is the socket's file name in the data dir.
const adminSocketName = "admin.sock"

// keyStore is the part of the session store the key commands use.
type keyStore interface {
	CreateKey(ctx context.Context, k sessionstore.Key) error
	Keys(ctx context.Context) ([]sessionstore.Key, error)
	RevokeKey(ctx context.Context, id string) error
}

// serveAdmin listens on <dataDir>/admin.sock and serves the key commands
// from st until the returned stop is called. A socket left by a server
// that died is replaced.
func serveAdmin(dataDir string, st adminStore, log *slog.Logger) (stop func(), err error) {
	path := filepath.Join(dataDir, adminSocketName)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("roughy: admin socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("roughy: admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("roughy: admin socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/keys", func(w http.ResponseWriter, r *http.Request) {
		keys, err := st.Keys(r.Context())
		if err != nil {
			adminError(w, err)
			return
		}
		writeJSON(w, keys)
	})
	mux.HandleFunc("POST /v1/keys", func(w http.ResponseWriter, r *http.Request) {
		var k sessionstore.Key
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&k); err != nil || k.ID == "" || k.Hash == "" {
			http.Error(w, "a key record with id and hash", http.StatusBadRequest)
			return
		}
		if err := st.CreateKey(r.Context(), k); err != nil {
			adminError(w, err)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("DELETE /v1/keys/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := st.RevokeKey(r.Context(), r.PathValue("id")); err != nil {
			adminError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	addQuotaAdmin(mux, st)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("roughy: admin socket", "err", err)
		}
	}()
	return func() {
		srv.Close()
		os.Remove(path)
	}, nil
}

// writeJSON answers v as JSON. A failed write means the admin client hung
// up: there is no one left to tell.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func adminError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, sessionstore.ErrNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
	case errors.Is(err, sessionstore.ErrExists):
		http.Error(w, err.Error(), http.StatusConflict)
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// adminClient runs the key commands through a running server's socket.
type adminClient struct {
	hc *http.Client
}

// dialAdmin returns a client for the server answering on dataDir's
// socket, or nil when none answers (no socket, or one left by a server
// that is gone).
func dialAdmin(ctx context.Context, dataDir string) *adminClient {
	path := filepath.Join(dataDir, adminSocketName)
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
	c, err := dial(ctx, "", "")
	if err != nil {
		return nil
	}
	c.Close()
	return &adminClient{hc: &http.Client{
		Transport: &http.Transport{DialContext: dial},
		Timeout:   30 * time.Second,
	}}
}

func (a *adminClient) do(ctx context.Context, method, path string, body any, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://roughy"+path, r)
	if err != nil {
		return err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("roughy: admin socket: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s", sessionstore.ErrNotFound, strings.TrimSpace(string(msg)))
	case resp.StatusCode == http.StatusConflict:
		return fmt.Errorf("%w: %s", sessionstore.ErrExists, strings.TrimSpace(string(msg)))
	case resp.StatusCode >= 300:
		return fmt.Errorf("roughy: admin socket: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	if out != nil {
		return json.Unmarshal(msg, out)
	}
	return nil
}

func (a *adminClient) CreateKey(ctx context.Context, k sessionstore.Key) error {
	return a.do(ctx, http.MethodPost, "/v1/keys", k, nil)
}

func (a *adminClient) Keys(ctx context.Context) ([]sessionstore.Key, error) {
	var keys []sessionstore.Key
	err := a.do(ctx, http.MethodGet, "/v1/keys", nil, &keys)
	return keys, err
}

func (a *adminClient) RevokeKey(ctx context.Context, id string) error {
	return a.do(ctx, http.MethodDelete, "/v1/keys/"+url.PathEscape(id), nil, nil)
}
