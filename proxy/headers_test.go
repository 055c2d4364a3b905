package proxy

import (
	"bytes"
	"encoding/base64"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestParseInt(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"0", 0, false},
		{"53687091200", 53687091200, false},
		{"007", 7, false},
		{"9223372036854775807", 9223372036854775807, false},
		{"9223372036854775808", 0, true},
		{"", 0, true},
		{"-1", 0, true},
		{"+1", 0, true},
		{" 1", 0, true},
		{"1e3", 0, true},
		{"abc", 0, true},
		{"12345678901234567890", 0, true},
	}
	for _, tt := range tests {
		got, err := parseInt(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseInt(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseMetadata(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    metadata
		wantErr bool
	}{
		{"empty", "", metadata{}, false},
		{"seed script", "type " + b64("video") + ",content_type " + b64("video/mp4") + ",filename " + b64("ep 42.mp4"),
			metadata{"type": "video", "content_type": "video/mp4", "filename": "ep 42.mp4"}, false},
		{"key without value", "type " + b64("audio") + ",is_confidential", metadata{"type": "audio", "is_confidential": ""}, false},
		{"spaces around pairs", " type " + b64("audio") + " , a " + b64("b") + " ", metadata{"type": "audio", "a": "b"}, false},
		{"unpadded base64", "a YWI", metadata{"a": "ab"}, false},
		{"utf-8 value", "filename " + b64("épisode.mp4"), metadata{"filename": "épisode.mp4"}, false},
		{"trailing comma", "a " + b64("x") + ",", metadata{"a": "x"}, false},
		{"bad base64", "type !!!", nil, true},
		{"unpadded base64 value", "type dmlkZW8", metadata{"type": "video"}, false},
		{"wrong padding", "type dmlkZW8==", nil, true},
		{"duplicate key", "type " + b64("video") + ",type " + b64("audio"), nil, true},
		{"control char in key", "ty\x01pe " + b64("video"), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMetadata(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseMetadata(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err == nil && !maps.Equal(got, tt.want) {
				t.Errorf("parseMetadata(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestMetadataShape(t *testing.T) {
	tests := []struct {
		md      metadata
		want    assetShape
		wantErr bool
	}{
		{metadata{"type": "video", "content_type": "video/mp4", "filename": "a.mp4"}, assetShape{"video", "video/mp4", "a.mp4"}, false},
		{metadata{"type": "audio"}, assetShape{"audio", "", ""}, false},
		{metadata{"type": "Video"}, assetShape{"video", "", ""}, false},
		// Uppy: type is the MIME type, name the file name.
		{metadata{"type": "video/mp4", "name": "clip.mp4", "filetype": "video/mp4"}, assetShape{"video", "video/mp4", "clip.mp4"}, false},
		{metadata{"type": "audio/wav"}, assetShape{"audio", "audio/wav", ""}, false},
		{metadata{"type": "audio/wav", "content_type": "audio/x-wav"}, assetShape{"audio", "audio/x-wav", ""}, false},
		{metadata{}, assetShape{}, true},
		{metadata{"type": "image"}, assetShape{}, true},
		{metadata{"type": "image/png"}, assetShape{}, true},
		{metadata{"content_type": "video/mp4"}, assetShape{}, true},
		// content_type must be a media type of printable ASCII.
		{metadata{"type": "video", "content_type": `video/mp4; codecs="avc1.64001f"`}, assetShape{"video", `video/mp4; codecs="avc1.64001f"`, ""}, false},
		{metadata{"type": "video", "content_type": "text/html"}, assetShape{"video", "text/html", ""}, false},
		{metadata{"type": "video", "content_type": "video/mp4\r\nSet-Cookie: a=b"}, assetShape{}, true},
		{metadata{"type": "video", "content_type": "video/mp4\n"}, assetShape{}, true},
		{metadata{"type": "video", "content_type": "video"}, assetShape{}, true},
		{metadata{"type": "video", "content_type": "video/"}, assetShape{}, true},
		{metadata{"type": "video", "content_type": "video/mp4 x"}, assetShape{}, true},
		{metadata{"type": "video", "content_type": "vidéo/mp4"}, assetShape{}, true},
		{metadata{"type": "video", "content_type": `video/mp4; a="b`}, assetShape{}, true},
		{metadata{"type": "video/mp4\r\nX: y"}, assetShape{}, true},
		{metadata{"type": "video", "filetype": "text/html\x00"}, assetShape{}, true},
		{metadata{"type": "video", "content_type": "video/" + strings.Repeat("x", 250)}, assetShape{}, true},
	}
	for _, tt := range tests {
		got, err := tt.md.shape()
		if (err != nil) != tt.wantErr {
			t.Errorf("%v.shape() error = %v, want error %v", tt.md, err, tt.wantErr)
			continue
		}
		if err == nil && got != tt.want {
			t.Errorf("%v.shape() = %+v, want %+v", tt.md, got, tt.want)
		}
	}
}

func TestParseChecksum(t *testing.T) {
	sha256Sum := make([]byte, 32)
	sha1Sum := bytes.Repeat([]byte{1}, 20)
	md5Sum := bytes.Repeat([]byte{2}, 16)
	tests := []struct {
		in      string
		alg     string
		sum     []byte
		wantErr bool
	}{
		{"sha256 " + base64.StdEncoding.EncodeToString(sha256Sum), "sha256", sha256Sum, false},
		{"sha1 " + base64.StdEncoding.EncodeToString(sha1Sum), "sha1", sha1Sum, false},
		{"SHA1 " + base64.StdEncoding.EncodeToString(sha1Sum), "sha1", sha1Sum, false},
		{"md5 " + base64.StdEncoding.EncodeToString(md5Sum), "md5", md5Sum, false},
		{"crc32 AAAAAA==", "", nil, true},
		{"sha256", "", nil, true},
		{"sha256 !!!", "", nil, true},
		{"sha256 " + base64.StdEncoding.EncodeToString(sha1Sum), "", nil, true},
		{"", "", nil, true},
	}
	for _, tt := range tests {
		got, err := parseChecksum(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseChecksum(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && (got.Algorithm != tt.alg || !bytes.Equal(got.Sum, tt.sum)) {
			t.Errorf("parseChecksum(%q) = %s %x, want %s %x", tt.in, got.Algorithm, got.Sum, tt.alg, tt.sum)
		}
	}
}

func TestParseConcat(t *testing.T) {
	id1, id2 := "019deafa-0000-7000-8000-000000000001", "019deafa-0000-7000-8000-000000000002"
	tests := []struct {
		in      string
		want    concat
		wantErr bool
	}{
		{"partial", concat{Partial: true}, false},
		{"final;https://api.example/api/v1/assets/upload-resumable/" + id1 + " /api/v1/assets/upload-resumable/" + id2,
			concat{Final: []string{id1, id2}}, false},
		{"final;http://h:8080/api/v1/assets/upload-resumable/" + id1, concat{Final: []string{id1}}, false},
		{"final;", concat{}, true},
		{"final;/elsewhere/" + id1, concat{}, true},
		{"final;/api/v1/assets/upload-resumable/../x", concat{}, true},
		{"final", concat{}, true},
		{"partial;x", concat{}, true},
		{"", concat{}, true},
	}
	for _, tt := range tests {
		got, err := parseConcat(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseConcat(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && (got.Partial != tt.want.Partial || !slices.Equal(got.Final, tt.want.Final) || !got.Partial && got.Raw != tt.in) {
			t.Errorf("parseConcat(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseRange(t *testing.T) {
	tests := []struct {
		in      string
		size    int64
		want    byteRange
		ok      bool
		unsatis bool
	}{
		{"bytes=0-9", 100, byteRange{0, 10}, true, false},
		{"bytes=90-", 100, byteRange{90, 10}, true, false},
		{"bytes=90-200", 100, byteRange{90, 10}, true, false},
		{"bytes=-10", 100, byteRange{90, 10}, true, false},
		{"bytes=-1000", 100, byteRange{0, 100}, true, false},
		{"bytes=100-", 100, byteRange{}, false, true},
		{"bytes=-0", 100, byteRange{}, false, true},
		{"bytes=0-", 0, byteRange{}, false, true},
		{"bytes=5-1", 100, byteRange{}, false, false},
		{"bytes=0-1,5-6", 100, byteRange{}, false, false},
		{"items=0-1", 100, byteRange{}, false, false},
		{"bytes=x-1", 100, byteRange{}, false, false},
	}
	for _, tt := range tests {
		got, ok, err := parseRange(tt.in, tt.size)
		if errors.Is(err, errRangeUnsatisfiable) != tt.unsatis || ok != tt.ok || got != tt.want {
			t.Errorf("parseRange(%q, %d) = %+v, %v, %v; want %+v, %v, unsatisfiable %v", tt.in, tt.size, got, ok, err, tt.want, tt.ok, tt.unsatis)
		}
	}
}

func TestDownloadToken(t *testing.T) {
	s := New(Config{SigningKey: []byte("k")}, nil, nil)
	now := time.Unix(1_800_000_000, 0)
	tok := s.assets.signDownload("a1", now.Add(time.Hour))
	if err := s.assets.verifyDownload("a1", tok, now); err != nil {
		t.Fatalf("verify fresh token: %v", err)
	}
	if err := s.assets.verifyDownload("a2", tok, now); err == nil {
		t.Errorf("token for a1 accepted for a2")
	}
	if err := s.assets.verifyDownload("a1", tok, now.Add(2*time.Hour)); err == nil {
		t.Errorf("expired token accepted")
	}
	// Moving the expiry invalidates the MAC.
	if err := s.assets.verifyDownload("a1", "9999999999"+tok[len("1800003600"):], now); err == nil {
		t.Errorf("token with a changed expiry accepted")
	}
	other := New(Config{SigningKey: []byte("other")}, nil, nil)
	if err := other.assets.verifyDownload("a1", tok, now); err == nil {
		t.Errorf("token accepted under another signing key")
	}
}

// TestParseMetadataAllocs: every write of an upload parses its stored
// metadata (uploadOf), so a value costs one allocation, its string, plus
// the map's own.
func TestParseMetadataAllocs(t *testing.T) {
	h := md("type", "video", "content_type", "video/mp4", "filename", "clip.mp4")
	if n := testing.AllocsPerRun(100, func() { _, _ = parseMetadata(h) }); n > 5 {
		t.Errorf("parseMetadata of 3 values: %v allocations, want at most 5", n)
	}
}
