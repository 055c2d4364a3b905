package proxy

import (
	"bytes"
	"maps"
	"slices"
	"strconv"
	"testing"
)

// The fuzz targets check that the header parsers never panic and that what
// they accept survives a round trip through its canonical form. Their seed
// corpus runs with every `go test`; `go test -fuzz FuzzUploadMetadata
// ./proxy/` explores further.

func FuzzUploadMetadata(f *testing.F) {
	for _, s := range []string{
		"", "type dmlkZW8=", "type dmlkZW8=,content_type dmlkZW8vbXA0,filename ZXAubXA0",
		"a,b,c", "a YWI", " a  YWI= , b ", "type dmlkZW8=,type YXVkaW8=", "k !!", ",,,", "a\tYQ==", "é YQ==",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		md, err := parseMetadata(h)
		if err != nil {
			return
		}
		enc := md.encode()
		again, err := parseMetadata(enc)
		if err != nil {
			t.Fatalf("parseMetadata(%q) accepted, but its encoding %q is refused: %v", h, enc, err)
		}
		if !maps.Equal(md, again) {
			t.Fatalf("round trip of %q: got %v, want %v", h, again, md)
		}
		_, _ = md.shape() // must not panic
	})
}

func FuzzUploadChecksum(f *testing.F) {
	for _, s := range []string{
		"sha256 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "sha1 2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
		"md5 1B2M2Y8AsgTpgAmY7PhCfg==", "crc32 AAAA", "sha256", "sha256  ", "SHA256 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
		" md5 1B2M2Y8AsgTpgAmY7PhCfg== ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		c, err := parseChecksum(h)
		if err != nil {
			return
		}
		if want := digestSizes[c.Algorithm]; len(c.Sum) != want {
			t.Fatalf("parseChecksum(%q): %d digest bytes for %s, want %d", h, len(c.Sum), c.Algorithm, want)
		}
		again, err := parseChecksum(formatChecksum(c))
		if err != nil {
			t.Fatalf("parseChecksum(%q) accepted, its canonical form is refused: %v", h, err)
		}
		if again.Algorithm != c.Algorithm || !bytes.Equal(again.Sum, c.Sum) {
			t.Fatalf("round trip of %q: got %s %x, want %s %x", h, again.Algorithm, again.Sum, c.Algorithm, c.Sum)
		}
	})
}

func FuzzUploadConcat(f *testing.F) {
	for _, s := range []string{
		"partial", "final;/api/v1/assets/upload-resumable/a b",
		"final;https://x/api/v1/assets/upload-resumable/019deafa-0000-7000-8000-000000000001 http://y:1/api/v1/assets/upload-resumable/b",
		"final;", "final; ", "final;%zz", "final;/api/v1/assets/upload-resumable/../../etc", "partial ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		c, err := parseConcat(h)
		if err != nil {
			return
		}
		for _, id := range c.Final {
			if !validID(id) {
				t.Fatalf("parseConcat(%q) yielded invalid id %q", h, id)
			}
		}
		again, err := parseConcat(c.format())
		if err != nil {
			t.Fatalf("parseConcat(%q) accepted, its canonical form %q is refused: %v", h, c.format(), err)
		}
		if again.Partial != c.Partial || !slices.Equal(again.Final, c.Final) {
			t.Fatalf("round trip of %q: got %+v, want %+v", h, again, c)
		}
	})
}

func FuzzNumericHeaders(f *testing.F) {
	for _, s := range []string{"0", "1", "53687091200", "53687091201", "-1", "", "9223372036854775807",
		"9223372036854775808", "0x10", "1 ", "٣"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		n, err := parseInt(h)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("parseInt(%q) = %d, negative", h, n)
		}
		again, err := parseInt(strconv.FormatInt(n, 10))
		if err != nil || again != n {
			t.Fatalf("round trip of %q: got %d, %v; want %d", h, again, err, n)
		}
		// The range parser shares the number parser; it must not panic
		// whatever the numbers.
		_, _, _ = parseRange("bytes="+h+"-"+h, n)
		_, _, _ = parseRange("bytes=-"+h, n)
	})
}
