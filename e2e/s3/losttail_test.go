package s3e2e

import (
	"context"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roughy/ingest/internal/testsvc"
)

// TestLostTailFallsBack: an upload whose committed state names a tail
// object S3 no longer has (what a Redis failover that rolled back past
// the write deleting it leaves) falls back instead of failing for good:
// the next PATCH answers 503, HEAD reports the offset before the tail,
// and the client that sends the bytes again from there completes the
// upload with the right bytes. Before, every PATCH answered 404.
func TestLostTailFallsBack(t *testing.T) { eachS3(t, testLostTailFallsBack) }

func testLostTailFallsBack(t *testing.T, backend testsvc.S3Backend) {
	t.Run("local-sessions", func(t *testing.T) {
		gw := startGateway(t, backend)
		lostTailResume(t, gw, startRoughy(t, gw))
	})
	t.Run("redis", func(t *testing.T) {
		redisURL := testsvc.StartRedis(t)
		gw := startGateway(t, backend)
		lostTailResume(t, gw, startRoughy(t, gw, "--sessions", "redis", "--redis-url", redisURL))
	})
}

func lostTailResume(t *testing.T, gw *gateway, r *roughy) {
	ctx := testCtx(t)
	c := newClient(t, r, acmeKey)
	src := randomBytes(t, 10*mib+77, 77)
	loc, id := c.create(ctx, int64(len(src)), videoMD("video/mp4"), nil)
	first := 3*mib + 5 // under a part: stored as a tail
	c.patchOK(ctx, loc, 0, src[:first])
	tails := gw.Objects(ctx, objectKey(id)+".tail.")
	if len(tails) == 0 {
		t.Fatalf("no tail object after a PATCH of %d bytes", first)
	}
	for _, k := range tails {
		deleteObject(ctx, t, gw, k)
	}
	rep, err := c.patch(ctx, loc, int64(first), src[first:], nil)
	if err != nil || rep.Status != http.StatusServiceUnavailable {
		t.Fatalf("PATCH after the tail was lost: %v %v, want 503", rep, err)
	}
	if off := c.headOffset(ctx, loc); off != 0 {
		t.Fatalf("HEAD after the fall-back: offset %d, want 0 (the tail held bytes [0, %d))", off, first)
	}
	c.patchOK(ctx, loc, 0, src)
	c.checkReady(ctx, gw, id, src, "video/mp4")
	if left := gw.Objects(ctx, objectKey(id)+".tail."); len(left) != 0 {
		t.Errorf("tails left after completion: %v", left)
	}
}

func deleteObject(ctx context.Context, t *testing.T, gw *gateway, key string) {
	t.Helper()
	if _, err := gw.Client().DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &gw.Bucket, Key: aws.String(key)}); err != nil {
		t.Fatalf("delete %s: %v", key, err)
	}
}
