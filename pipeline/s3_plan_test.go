package pipeline

import (
	"fmt"
	"testing"
)

const tMiB = 1 << 20

func TestS3PartSize(t *testing.T) {
	tests := []struct {
		length int64
		want   int64
	}{
		{0, 5 * tMiB},
		{1, 5 * tMiB},
		{2 << 30, 5 * tMiB},
		{5000 * 5 * tMiB, 5 * tMiB},
		{5000*5*tMiB + 1, 6 * tMiB},
		{MaxUploadLength, 11 * tMiB},
		{-1, 11 * tMiB},
	}
	for _, tt := range tests {
		if got := s3PartSize(tt.length); got != tt.want {
			t.Errorf("s3PartSize(%d) = %d, want %d", tt.length, got, tt.want)
		}
		if got := s3PartSize(tt.length); got%tMiB != 0 || got < s3MinPartSize {
			t.Errorf("s3PartSize(%d) = %d: not a whole MiB >= 5 MiB", tt.length, got)
		}
	}
}

func TestS3PartsFor(t *testing.T) {
	const p = 5 * tMiB
	tests := []struct {
		name                       string
		length, offset, tail, size int64
		want                       int32
	}{
		{"small write, not the end", 100 * tMiB, 0, 0, tMiB, 0},
		{"one part exactly", 100 * tMiB, 0, 0, p, 1},
		{"5 MiB + 1", 100 * tMiB, 0, 0, p + 1, 1},
		{"tail completes a part", 100 * tMiB, 3 * tMiB, 3 * tMiB, 2 * tMiB, 1},
		{"tail short of a part", 100 * tMiB, 3 * tMiB, 3 * tMiB, 2*tMiB - 1, 0},
		{"64 MiB chunk", 100 * tMiB, 0, 0, 64 * tMiB, 12},
		{"unknown size: up to MaxChunk", 200 * tMiB, 0, 0, -1, 12},
		{"unknown size, deferred length", -1, 0, 0, -1, 12},
		{"reaches the end, short last part", 12 * tMiB, 0, 0, 12 * tMiB, 3},
		{"reaches the end on a boundary", 10 * tMiB, 0, 0, 10 * tMiB, 2},
		{"tiny upload", 1000, 0, 0, 1000, 1},
		{"last bytes after a tail", 12 * tMiB, 11 * tMiB, tMiB, tMiB, 1},
		{"size past the end is capped", 6 * tMiB, 0, 0, 64 * tMiB, 2},
		{"unknown size reaching the end", 7 * tMiB, 0, 0, -1, 2},
		{"nothing left", 5 * tMiB, 5 * tMiB, 0, 0, 0},
	}
	for _, tt := range tests {
		if got := s3PartsFor(tt.length, tt.offset, tt.tail, p, tt.size); got != tt.want {
			t.Errorf("%s: s3PartsFor(len %d, off %d, tail %d, size %d) = %d, want %d",
				tt.name, tt.length, tt.offset, tt.tail, tt.size, got, tt.want)
		}
	}
}

func TestS3BufferSize(t *testing.T) {
	const p = 5 * tMiB
	tests := []struct {
		layout           string
		carry, remaining int64
		want             int64
	}{
		{S3LayoutDefault, 0, 0, 0},
		{S3LayoutDefault, 0, tMiB, tMiB},
		{S3LayoutDefault, tMiB, tMiB, 2 * tMiB},
		{S3LayoutDefault, 0, p, p},
		{S3LayoutDefault, 0, p + 1, p + 1},
		{S3LayoutDefault, 0, 2*p - 1, 2*p - 1},
		{S3LayoutDefault, 0, 2 * p, 2 * p},
		{S3LayoutDefault, 0, 16*tMiB + p - 1, 16*tMiB + p - 1},
		{S3LayoutDefault, 0, 16*tMiB + p, 16 * tMiB},
		{S3LayoutDefault, 3 * tMiB, 64 * tMiB, 16 * tMiB},
		{S3LayoutEqual, 0, p + 1, p},
		{S3LayoutEqual, 0, 2*p - 1, p},
		{S3LayoutEqual, tMiB, tMiB, 2 * tMiB},
	}
	for _, tt := range tests {
		if got := s3BufferSize(tt.layout, p, tt.carry, tt.remaining); got != tt.want {
			t.Errorf("s3BufferSize(%s, carry %d, remaining %d) = %d, want %d", tt.layout, tt.carry, tt.remaining, got, tt.want)
		}
	}
}

// planUpload is the state of a simulated upload.
type planUpload struct {
	layout           string
	length, partSize int64
	offset, tail     int64
	reserved, used   int64
	parts            []int64 // sizes
}

// write simulates S3Sink.Write of size bytes of which only got arrive
// (got < size: the client dropped), with the same plan functions, and
// checks it never uses more part numbers than it reserved.
func (u *planUpload) write(t *testing.T, size, got int64) {
	t.Helper()
	reserved := int64(s3PartsFor(u.length, u.offset, u.tail, u.partSize, size))
	u.reserved += reserved
	limit := s3WriteSize(u.length, u.offset, size)
	got = min(got, limit)
	var read int64
	carry := u.tail
	used := int64(0)
	for {
		remaining := limit - read
		if remaining <= 0 {
			break
		}
		want := s3BufferSize(u.layout, u.partSize, carry, remaining)
		n := min(want, carry+got-read) // bytes in the buffer
		read += n - carry
		tailBytes := carry
		carry = 0
		complete := u.length >= 0 && u.offset+read == u.length
		switch {
		case s3IsPart(u.partSize, n, complete):
			used++
			u.parts = append(u.parts, n)
			u.tail = 0
		case n > tailBytes:
			u.tail = n
		}
		if n < want {
			break // the body ended or failed
		}
	}
	u.offset += read
	if used > reserved {
		t.Fatalf("write of %d at %d used %d part numbers, reserved %d", size, u.offset-read, used, reserved)
	}
	u.used += used
}

// TestS3PlanFits10000Parts simulates whole 50 GiB uploads in every chunk
// size clients use, with and without drops, and counts part numbers.
func TestS3PlanFits10000Parts(t *testing.T) {
	const length = MaxUploadLength
	chunks := []int64{5*tMiB + 1, tMiB, 7*tMiB + 3, 11*tMiB - 1, 11 * tMiB, 64 * tMiB}
	for _, layout := range []string{S3LayoutDefault, S3LayoutEqual} {
		for _, chunk := range chunks {
			for _, dropEvery := range []int{0, 4} {
				t.Run(fmt.Sprintf("%s/chunk=%d/dropEvery=%d", layout, chunk, dropEvery), func(t *testing.T) {
					u := &planUpload{layout: layout, length: length, partSize: s3PartSize(length)}
					for i := 1; u.offset < length; i++ {
						got := chunk
						if dropEvery > 0 && i%dropEvery == 0 {
							got = chunk / 2 // the client drops halfway
						}
						u.write(t, chunk, got)
					}
					var total int64
					for i, p := range u.parts {
						total += p
						last := i == len(u.parts)-1
						if !last && p < u.partSize {
							t.Fatalf("part %d holds %d bytes, less than the part size %d", i+1, p, u.partSize)
						}
						if layout == S3LayoutEqual && !last && p != u.partSize {
							t.Fatalf("equal layout: part %d holds %d bytes, want %d", i+1, p, u.partSize)
						}
					}
					if total != length {
						t.Fatalf("parts hold %d bytes, want %d", total, length)
					}
					t.Logf("part size %d MiB: %d parts, %d part numbers reserved", u.partSize/tMiB, u.used, u.reserved)
					if u.reserved > s3MaxParts {
						t.Fatalf("reserved %d part numbers (used %d), more than %d", u.reserved, u.used, s3MaxParts)
					}
					if maxParts := (length + u.partSize - 1) / u.partSize; u.used > maxParts {
						t.Fatalf("used %d parts, more than ceil(length/partSize) = %d", u.used, maxParts)
					}
				})
			}
		}
	}
}
