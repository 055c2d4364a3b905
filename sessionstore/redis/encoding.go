package redis

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// Encodings of the records in Redis hashes and lists: the wire format
// every node of a running fleet shares, so a field is only ever added.

// redisFlatMap turns a flat HGETALL answer from a script into a map.
func redisFlatMap(v any) map[string]string {
	list, _ := v.([]any)
	m := make(map[string]string, len(list)/2)
	for i := 0; i+1 < len(list); i += 2 {
		k, _ := list[i].(string)
		val, _ := list[i+1].(string)
		m[k] = val
	}
	return m
}

func redisFmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixNano(), 10)
}

func redisParseTime(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if s == "" || err != nil {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func redisBool(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// rsConcatHeader is the session hash field of Session.ConcatHeader,
// written only when set: sessions stored before it lack it.
const rsConcatHeader = "concath"

// redisSessionFields encodes s as HSET arguments.
func redisSessionFields(s sessionstore.Session) []any {
	concat := ""
	if len(s.ConcatOf) > 0 {
		b, _ := json.Marshal(s.ConcatOf)
		concat = string(b)
	}
	f := []any{
		rsID, s.ID, rsAccount, s.Account, rsAssetID, s.AssetID,
		rsLength, strconv.FormatInt(s.Length, 10), rsOffset, strconv.FormatInt(s.Offset, 10),
		rsMetadata, s.Metadata, rsPartial, redisBool(s.Partial), rsConcat, concat,
		rsHash, string(s.HashState), rsStorage, string(s.Storage),
		rsNextPart, strconv.FormatInt(int64(s.NextPart), 10), rsDone, redisBool(s.Completed),
		rsCreated, redisFmtTime(s.CreatedAt), rsExpires, redisFmtTime(s.ExpiresAt), rsFence, "0",
	}
	if s.ConcatHeader != "" {
		f = append(f, rsConcatHeader, s.ConcatHeader)
	}
	return f
}

func redisDecodeSession(m map[string]string) (sessionstore.Session, error) {
	s := sessionstore.Session{
		ID: m[rsID], Account: m[rsAccount], AssetID: m[rsAssetID], Metadata: m[rsMetadata],
		Partial: m[rsPartial] == "1", Completed: m[rsDone] == "1", ConcatHeader: m[rsConcatHeader],
		CreatedAt: redisParseTime(m[rsCreated]), ExpiresAt: redisParseTime(m[rsExpires]),
	}
	var err1, err2, err3 error
	s.Length, err1 = strconv.ParseInt(m[rsLength], 10, 64)
	s.Offset, err2 = strconv.ParseInt(m[rsOffset], 10, 64)
	next, err3 := strconv.ParseInt(m[rsNextPart], 10, 32)
	s.NextPart = int32(next)
	if err := errors.Join(err1, err2, err3); err != nil {
		return sessionstore.Session{}, fmt.Errorf("sessionstore: redis: corrupt session %q: %w", s.ID, err)
	}
	// Absent until the first offset retrieval: 0.
	s.HeadFence, _ = strconv.ParseInt(m[rsHeads], 10, 64)
	if v := m[rsHash]; v != "" {
		s.HashState = []byte(v)
	}
	if v := m[rsStorage]; v != "" {
		s.Storage = []byte(v)
	}
	if v := m[rsConcat]; v != "" {
		if err := json.Unmarshal([]byte(v), &s.ConcatOf); err != nil {
			return sessionstore.Session{}, fmt.Errorf("sessionstore: redis: corrupt session %q: %w", s.ID, err)
		}
	}
	return s, nil
}

// redisAssetFields encodes a as HSET arguments.
func redisAssetFields(a sessionstore.Asset) []any {
	meta := ""
	if len(a.Metadata) > 0 {
		b, _ := json.Marshal(a.Metadata)
		meta = string(b)
	}
	return []any{
		raID, a.ID, raAccount, a.Account, raSession, a.SessionID, raType, a.Type, raState, a.State,
		raSize, strconv.FormatInt(a.SizeBytes, 10), raCType, a.ContentType, raFilename, a.Filename,
		raMetadata, meta, raDuration, a.DurationSeconds, raSHA256, a.SHA256, raKey, a.StorageKey,
		raCreated, redisFmtTime(a.CreatedAt), raDeleted, redisBool(a.Deleted),
	}
}

func redisDecodeAsset(m map[string]string) (sessionstore.Asset, error) {
	a := sessionstore.Asset{
		ID: m[raID], Account: m[raAccount], SessionID: m[raSession], Type: m[raType], State: m[raState],
		ContentType: m[raCType], Filename: m[raFilename], DurationSeconds: m[raDuration],
		SHA256: m[raSHA256], StorageKey: m[raKey], CreatedAt: redisParseTime(m[raCreated]),
		Deleted: m[raDeleted] == "1",
	}
	var err error
	if a.SizeBytes, err = strconv.ParseInt(m[raSize], 10, 64); err != nil {
		return sessionstore.Asset{}, fmt.Errorf("sessionstore: redis: corrupt asset %q: %w", a.ID, err)
	}
	if v := m[raMetadata]; v != "" {
		if err := json.Unmarshal([]byte(v), &a.Metadata); err != nil {
			return sessionstore.Asset{}, fmt.Errorf("sessionstore: redis: corrupt asset %q: %w", a.ID, err)
		}
	}
	return a, nil
}

// redisEncodePart is the parts-list form of p:
// "number:size:offset:checksum:etag". (Parts written before checksums were
// kept have no checksum field; S3 checksums and ETags hold no ':'.)
func redisEncodePart(p sessionstore.Part) string {
	return strconv.FormatInt(int64(p.Number), 10) + ":" + strconv.FormatInt(p.Size, 10) + ":" +
		strconv.FormatInt(p.Offset, 10) + ":" + p.Checksum + ":" + p.ETag
}

func redisDecodePart(s string) (sessionstore.Part, error) {
	f := strings.SplitN(s, ":", 5)
	var sum string
	switch len(f) {
	case 4: // number:size:offset:etag
	case 5:
		sum = f[3]
		f = append(f[:3], f[4])
	default:
		return sessionstore.Part{}, fmt.Errorf("sessionstore: redis: corrupt part %q", s)
	}
	n, err1 := strconv.ParseInt(f[0], 10, 32)
	size, err2 := strconv.ParseInt(f[1], 10, 64)
	off, err3 := strconv.ParseInt(f[2], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return sessionstore.Part{}, fmt.Errorf("sessionstore: redis: corrupt part %q: %w", s, err)
	}
	return sessionstore.Part{Number: int32(n), Size: size, Offset: off, ETag: f[3], Checksum: sum}, nil
}

// ms converts a duration to whole milliseconds, rounding up so that a
// positive duration never becomes 0 (which Redis reads as "forever" in
// BLOCK and refuses in PX).
func redisMillis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
