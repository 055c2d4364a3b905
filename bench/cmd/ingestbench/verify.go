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
)

// downloadSHA256 is the SHA-256 of what GET url returns.
func downloadSHA256(ctx context.Context, c *http.Client, url string) (string, error) {
	if url == "" {
		return "", errors.New("no download_url")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	// No whole-request timeout: a big download takes what it takes.
	resp, err := (&http.Client{Transport: c.Transport}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET: %s", resp.Status)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// verifyAsset checks the asset a POST answered with createBody against
// the source's size bytes at base; "" when it holds.
func (b *bench) verifyAsset(ctx context.Context, c *http.Client, h http.Header, base string, createBody []byte, srcBase, size int64) string {
	var created struct {
		Asset struct {
			ID string `json:"id"`
		} `json:"asset"`
	}
	if err := json.Unmarshal(createBody, &created); err != nil || created.Asset.ID == "" {
		return fmt.Sprintf("FAILED: POST body has no asset id: %q", tusclientTrim(createBody))
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/"+created.Asset.ID, nil)
	req.Header = h.Clone()
	resp, err := c.Do(req)
	if err != nil {
		return "FAILED: GET asset: " + err.Error()
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	var asset struct {
		State     string `json:"state"`
		SizeBytes *int64 `json:"size_bytes"`
		SHA256    string `json:"sha256"`
		Download  string `json:"download_url"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &asset) != nil {
		return fmt.Sprintf("FAILED: GET asset: %d %q", resp.StatusCode, tusclientTrim(body))
	}
	want, err := b.src.sha256Of(srcBase, size)
	if err != nil {
		return "FAILED: " + err.Error()
	}
	if asset.State != "ready" || asset.SizeBytes == nil || *asset.SizeBytes != size || asset.SHA256 != want {
		return fmt.Sprintf("FAILED: asset %s: state %q size %v sha256 %q, want ready %d %s", created.Asset.ID, asset.State, asset.SizeBytes, asset.SHA256, size, want)
	}
	// The sha256 above was computed on the way in; what storage holds is
	// read back through the download URL.
	if got, err := downloadSHA256(ctx, c, asset.Download); err != nil || got != want {
		return fmt.Sprintf("FAILED: download of asset %s: sha256 %s (%v), want %s", created.Asset.ID, got, err, want)
	}
	return ""
}
