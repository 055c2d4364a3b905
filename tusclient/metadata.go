package tusclient

import (
	"encoding/base64"
	"sort"
	"strings"
)

// EncodeMetadata renders pairs, in their order, as an Upload-Metadata
// header value. A pair with an empty value is left out.
func EncodeMetadata(pairs [][2]string) string {
	var b strings.Builder
	for _, p := range pairs {
		if p[1] == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p[0])
		b.WriteByte(' ')
		b.WriteString(base64.StdEncoding.EncodeToString([]byte(p[1])))
	}
	return b.String()
}

// SortedMetadata turns m into pairs sorted by key, so that requests are
// reproducible.
func SortedMetadata(m map[string]string) [][2]string {
	pairs := make([][2]string, 0, len(m))
	for k, v := range m {
		pairs = append(pairs, [2]string{k, v})
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i][0] < pairs[j][0] })
	return pairs
}
