package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// errCorrupt marks an asset whose SHA-256 is not its source's.
var errCorrupt = errors.New("loadtest: corrupt asset")

// assetURL is the asset resource of upload url loc: Roughy serves
// /api/v1/assets/{id} next to the creation URL, and a session and its
// asset share the id. ok is false for servers without it (tusd).
func assetURL(endpoint, loc string) (string, bool) {
	prefix, _, ok := strings.Cut(endpoint, "/upload-resumable")
	id := loc[strings.LastIndexByte(loc, '/')+1:]
	if !ok || id == "" {
		return "", false
	}
	return prefix + "/" + id, true
}

// verifier fetches finished assets and compares their SHA-256 with the
// source's, which it computes once per distinct source section.
type verifier struct {
	hc      *http.Client
	src     io.ReaderAt
	size    int64
	timeout time.Duration
	// download: also GET each asset's download_url and hash the bytes.
	download bool

	mu   sync.Mutex
	sums map[int64][32]byte
}

// sourceSum is the SHA-256 of src[base:base+size].
func (v *verifier) sourceSum(base int64) ([32]byte, error) {
	v.mu.Lock()
	sum, ok := v.sums[base]
	v.mu.Unlock()
	if ok {
		return sum, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(v.src, base, v.size)); err != nil {
		return sum, fmt.Errorf("loadtest: hash source: %w", err)
	}
	copy(sum[:], h.Sum(nil))
	v.mu.Lock()
	if v.sums == nil {
		v.sums = map[int64][32]byte{}
	}
	v.sums[base] = sum
	v.mu.Unlock()
	return sum, nil
}

// check GETs the asset at url until it reports a SHA-256 (it is final once
// the last PATCH was acknowledged; the GET may see an older state on
// another node only briefly) and compares it with the source section at
// base. It returns the GETs' latencies.
func (v *verifier) check(ctx context.Context, url string, header http.Header, base int64) ([]time.Duration, error) {
	want, err := v.sourceSum(base)
	if err != nil {
		return nil, err
	}
	var lat []time.Duration
	deadline := time.Now().Add(v.timeout)
	for {
		t0 := time.Now()
		got, size, dl, err := v.fetch(ctx, url, header)
		lat = append(lat, time.Since(t0))
		switch {
		case err == nil && got != "":
			if got != hexOf(want) || size != v.size {
				return lat, fmt.Errorf("%w: %s has sha256 %s and %d bytes, want %x and %d", errCorrupt, url, got, size, want, v.size)
			}
			if v.download {
				return lat, v.checkDownload(ctx, url, dl, want)
			}
			return lat, nil
		case time.Now().After(deadline) || ctx.Err() != nil:
			if err == nil {
				err = errors.New("no sha256 yet")
			}
			return lat, fmt.Errorf("loadtest: verify %s: %w after %v", url, err, v.timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (v *verifier) fetch(ctx context.Context, url string, header http.Header) (sum string, size int64, download string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", 0, "", err
	}
	req.Header = header.Clone()
	resp, err := v.hc.Do(req)
	if err != nil {
		return "", 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", 0, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, "", fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var a struct {
		SHA256      string `json:"sha256"`
		SizeBytes   int64  `json:"size_bytes"`
		DownloadURL string `json:"download_url"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return "", 0, "", fmt.Errorf("GET %s: %w", url, err)
	}
	return a.SHA256, a.SizeBytes, a.DownloadURL, nil
}

// checkDownload GETs the asset's download_url (signed: no key) and
// compares the SHA-256 and length of what storage serves with the source.
func (v *verifier) checkDownload(ctx context.Context, url, download string, want [32]byte) error {
	if download == "" {
		return fmt.Errorf("%w: %s has no download_url", errCorrupt, url)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, download, nil)
	if err != nil {
		return err
	}
	resp, err := v.hc.Do(req)
	if err != nil {
		return fmt.Errorf("loadtest: download %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("loadtest: download %s: %d", url, resp.StatusCode)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return fmt.Errorf("loadtest: download %s: %w", url, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != hexOf(want) || n != v.size {
		return fmt.Errorf("%w: %s downloads as %d bytes with sha256 %s, want %d and %x", errCorrupt, url, n, got, v.size, want)
	}
	return nil
}

func hexOf(sum [32]byte) string { return hex.EncodeToString(sum[:]) }
