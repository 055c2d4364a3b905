package pipeline

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"io"
	"testing"

	sha256simd "github.com/minio/sha256-simd"
)

func TestSourceLimits(t *testing.T) {
	tests := []struct {
		name       string
		body       int
		size       int64
		length     int64
		offset     int64
		wantN      int64
		wantErr    error
		wantOffset int64
	}{
		{"exact size", 100, 100, 1000, 0, 100, nil, 100},
		{"unknown size, length bound", 100, -1, 150, 60, 90, ErrTooLarge, 150},
		{"unknown size fits", 90, -1, 150, 60, 90, nil, 150},
		{"size bound", 101, 100, -1, 7, 100, ErrTooLarge, 107},
		{"deferred length, short body", 10, -1, -1, 5, 10, nil, 15},
		{"empty", 0, 0, 10, 0, 0, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := Upload{Length: tt.length, Offset: tt.offset}
			if tt.offset > 0 {
				// Resume from the state of tt.offset zero bytes.
				h := sha256.New()
				h.Write(make([]byte, tt.offset))
				u.HashState = MarshalHash(h)
			}
			body := randomBytes(30, tt.body)
			src, err := NewSource(bytes.NewReader(body), u, tt.size)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(src)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if int64(len(got)) != tt.wantN || src.Offset() != tt.wantOffset {
				t.Fatalf("read %d bytes to offset %d, want %d to %d", len(got), src.Offset(), tt.wantN, tt.wantOffset)
			}
			whole := append(make([]byte, tt.offset), got...)
			if sum, _ := SumHex(src.HashState()); sum != sha256Hex(whole) {
				t.Fatalf("hash state sums to %s, want %s", sum, sha256Hex(whole))
			}
		})
	}
}

func TestSourceChecksumAlgorithms(t *testing.T) {
	for _, alg := range []string{"sha256", "sha1", "md5"} {
		if !CheckAlgorithm(alg) {
			t.Errorf("CheckAlgorithm(%q) = false", alg)
		}
	}
	for _, alg := range []string{"", "SHA256", "crc32", "sha512"} {
		if CheckAlgorithm(alg) {
			t.Errorf("CheckAlgorithm(%q) = true", alg)
		}
	}
	u := Upload{Length: 10}
	if _, err := newSource(bytes.NewReader(nil), u, 0, &Checksum{Algorithm: "crc32"}); err == nil {
		t.Fatal("newSource with an unknown algorithm did not fail")
	}
	// A checksum of the wrong length never matches.
	src, err := newSource(bytes.NewReader([]byte("abc")), u, 3, &Checksum{Algorithm: "sha256", Sum: []byte{1}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, src); err != nil {
		t.Fatal(err)
	}
	if src.checksumOK() {
		t.Fatal("a 1-byte sha256 matched")
	}
}

func TestSourceResumeHashErrors(t *testing.T) {
	if _, err := ResumeHash([]byte("not a state")); err == nil {
		t.Fatal("ResumeHash of garbage did not fail")
	}
	if _, err := SumHex([]byte("sha\x03short")); err == nil {
		t.Fatal("SumHex of a short state did not fail")
	}
	empty, err := SumHex(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256Hex(nil); empty != want {
		t.Fatalf("SumHex(nil) = %s, want %s", empty, want)
	}
}

// States saved by crypto/sha256 resume in sha256-simd and back, so the
// implementation can change without breaking stored sessions.
func TestSourceSHA256StateCompatible(t *testing.T) {
	data := randomBytes(31, 1<<20+77)
	want := sha256.Sum256(data)
	news := []struct {
		name string
		new  func() encodingHash
	}{
		{"crypto", func() encodingHash { return sha256.New().(encodingHash) }},
		{"simd", func() encodingHash { return sha256simd.New().(encodingHash) }},
	}
	for _, a := range news {
		for _, b := range news {
			h := a.new()
			_, _ = h.Write(data[:333_333]) // a hash never fails a write
			state, err := h.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			h2 := b.new()
			if err := h2.UnmarshalBinary(state); err != nil {
				t.Fatalf("%s state into %s: %v", a.name, b.name, err)
			}
			_, _ = h2.Write(data[333_333:])
			if got := h2.Sum(nil); !bytes.Equal(got, want[:]) {
				t.Fatalf("%s → %s: %s, want %s", a.name, b.name, hex.EncodeToString(got), hex.EncodeToString(want[:]))
			}
		}
	}
}

type encodingHash interface {
	Write([]byte) (int, error)
	Sum([]byte) []byte
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

func TestSourceCPUFeatures(t *testing.T) {
	got := CPUFeatures()
	for _, want := range []string{"sha-ni=", "avx512=", "avx2=", "sha256=" + SHA256Impl} {
		if !bytes.Contains([]byte(got), []byte(want)) {
			t.Errorf("CPUFeatures() = %q, missing %q", got, want)
		}
	}
	t.Log(got)
}

// BenchmarkSourceRead measures reading a 64 MiB chunk through Source in
// 1 MiB reads (the whole-object SHA-256, plus an Upload-Checksum).
func BenchmarkSourceRead(b *testing.B) {
	data := randomBytes(32, MaxChunk)
	for _, alg := range []string{"", "sha256", "sha1", "md5"} {
		name := alg
		if name == "" {
			name = "none"
		}
		b.Run("checksum-"+name, func(b *testing.B) {
			var sum *Checksum
			if alg != "" {
				sum = &Checksum{Algorithm: alg}
			}
			buf := make([]byte, 1<<20)
			r := bytes.NewReader(nil)
			u := Upload{Length: MaxChunk}
			b.SetBytes(MaxChunk)
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(data)
				src, err := newSource(r, u, MaxChunk, sum)
				if err != nil {
					b.Fatal(err)
				}
				for {
					if _, err := src.Read(buf); err != nil {
						break
					}
				}
				if src.Offset() != MaxChunk {
					b.Fatalf("read %d bytes", src.Offset())
				}
			}
		})
	}
}
