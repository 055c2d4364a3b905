package upload

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/pipeline"
	"github.com/roughy/ingest/sessionstore"
	"github.com/roughy/ingest/sessionstore/redis"
)

// s3Ops is a pipeline.Observer that counts S3 requests by operation.
type s3Ops struct {
	mu  sync.Mutex
	ops map[string]int
}

func (o *s3Ops) StartS3(ctx context.Context, op string, _ int32) (context.Context, func(error)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ops == nil {
		o.ops = map[string]int{}
	}
	o.ops[op]++
	return ctx, func(error) {}
}

// take returns the counts so far and starts again from zero.
func (o *s3Ops) take() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	got := o.ops
	o.ops = nil
	if got == nil {
		got = map[string]int{}
	}
	return got
}

// s3Env is a service over a real Redis and a real S3 server (the fleet),
// its S3 requests counted; when failPut is set, S3 refuses every
// PutObject of an upload's object.
type s3Env struct {
	*svcEnv
	ops     *s3Ops
	failPut atomic.Bool
}

// onS3 runs fn once per S3 implementation.
func onS3(t *testing.T, fn func(t *testing.T, e *s3Env)) {
	for _, b := range testsvc.S3Backends {
		t.Run(string(b), func(t *testing.T) { fn(t, newS3Env(t, b)) })
	}
}

func newS3Env(t *testing.T, backend testsvc.S3Backend) *s3Env {
	srv := testsvc.StartS3Backend(t, backend)
	// The sink takes credentials from the AWS default chain.
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": srv.AccessKey, "AWS_SECRET_ACCESS_KEY": srv.SecretKey, "AWS_SESSION_TOKEN": "",
		"AWS_REGION": srv.Region, "AWS_PROFILE": "", "AWS_CONFIG_FILE": "/nonexistent",
		"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}
	e := &s3Env{ops: &s3Ops{}}
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host // signed for this proxy's host
	}}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.failPut.Load() && r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/uploads/") && !r.URL.Query().Has("partNumber") {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	sink, err := pipeline.NewS3Sink(t.Context(), pipeline.S3Config{Bucket: srv.Bucket, Endpoint: front.URL, ForcePathStyle: true,
		MaxAttempts: 1, Observer: e.ops}, pipeline.NewPool(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	st, err := redis.New(t.Context(), testsvc.StartRedis(t))
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	e.svcEnv = &svcEnv{t: t, store: st, sink: sink, tel: &tel{}, ev: &events{}}
	e.svc = New(svcConfig, Deps{Store: st, Pipe: pipeline.New(sink), Events: e.ev, Tel: e.tel,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Describe: describe})
	stop, err := e.svc.Leases().Watch(t.Context())
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	t.Cleanup(stop)
	return e
}

// created stores an upload of length bytes through Service.Create, as a
// creation request does.
func (e *s3Env) created(length int64) sessionstore.Session {
	e.t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	id := "up-" + rand.Text()
	sess := sessionstore.Session{ID: id, Account: "acme", AssetID: id, Length: length, NextPart: 1,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	a := sessionstore.Asset{ID: id, Account: "acme", SessionID: id, Type: "video", State: sessionstore.StateUploading,
		SizeBytes: length, StorageKey: "uploads/" + id, CreatedAt: now}
	if err := e.svc.Create(e.t.Context(), &sess, a); err != nil {
		e.t.Fatalf("Create: %v", err)
	}
	return e.session(id)
}

func (e *s3Env) wantOps(what string, want map[string]int) {
	e.t.Helper()
	if got := e.ops.take(); !maps.Equal(got, want) {
		e.t.Fatalf("%s: S3 requests %v, want %v", what, got, want)
	}
}

// TestPutWholeUpload: on S3, a creation makes no storage, and an upload
// whose whole body comes in one append within one part is stored with
// one PutObject (and verified with one HeadObject), no multipart
// request; the bytes read back are the source's. DELETE removes the put
// object.
func TestPutWholeUpload(t *testing.T) {
	onS3(t, func(t *testing.T, e *s3Env) {
		w := &writeLog{Store: e.store}
		e.svc = New(svcConfig, Deps{Store: w, Pipe: e.svc.Pipe, Events: e.ev, Tel: e.tel, Log: e.svc.Log, Describe: describe})
		data := make([]byte, 3<<20+11)
		rand.Read(data)
		sess := e.created(int64(len(data)))
		if !StoragePending(sess) {
			t.Fatalf("created upload's storage %q, want it still to create", sess.Storage)
		}
		e.wantOps("creation", map[string]int{})
		done, err := e.appendBytes(sess, 0, data)
		if err != nil || !done.Completed {
			t.Fatalf("append: completed %v, %v", done.Completed, err)
		}
		e.wantOps("whole append", map[string]int{"PutObject": 1, "HeadObject": 1})
		// The put's commit completes the upload and settles its quota.
		if ops := w.take(); !slices.Equal(ops, []string{"CreateReserved", "Commit"}) {
			t.Fatalf("store writes of a creation and a whole put: %v, want [CreateReserved Commit]", ops)
		}
		e.wantStored(sess.ID, data)
		e.ops.take()

		if err := e.svc.Delete(t.Context(), "acme", sess.ID); err != nil {
			t.Fatalf("DELETE: %v", err)
		}
		if _, err := e.sink.Open(t.Context(), "uploads/"+sess.ID); !errors.Is(err, pipeline.ErrNoSuchUpload) {
			t.Fatalf("object after DELETE: %v, want ErrNoSuchUpload", err)
		}
		if ops := e.ops.take(); ops["AbortMultipartUpload"] != 0 || ops["DeleteObject"] != 1 {
			t.Fatalf("DELETE of a put upload: S3 requests %v", ops)
		}
	})
}

// TestPutFailsResumable: a PutObject that S3 refuses leaves the upload
// at offset 0 with its storage still to create, and the append retried
// completes it with one PutObject.
func TestPutFailsResumable(t *testing.T) {
	onS3(t, func(t *testing.T, e *s3Env) {
		data := make([]byte, 1<<20+5)
		rand.Read(data)
		sess := e.created(int64(len(data)))
		e.failPut.Store(true)
		if _, err := e.appendBytes(sess, 0, data); !errors.Is(err, pipeline.ErrStorage) {
			t.Fatalf("append with PutObject failing: %v, want ErrStorage", err)
		}
		e.wantOps("failed append", map[string]int{"PutObject": 1})
		cur := e.session(sess.ID)
		if cur.Offset != 0 || !StoragePending(cur) {
			t.Fatalf("after the failed put: offset %d, storage %q; want 0, still to create", cur.Offset, cur.Storage)
		}
		e.failPut.Store(false)
		if _, err := e.appendBytes(cur, 0, data); err != nil {
			t.Fatalf("retried append: %v", err)
		}
		e.wantOps("retried append", map[string]int{"PutObject": 1, "HeadObject": 1})
		e.wantStored(sess.ID, data)
	})
}

// TestTwoAppendsUseMultipart: an upload whose body comes in two appends
// is stored as a multipart upload, as before.
func TestTwoAppendsUseMultipart(t *testing.T) {
	onS3(t, func(t *testing.T, e *s3Env) {
		data := make([]byte, 2<<20+7)
		rand.Read(data)
		sess := e.created(int64(len(data)))
		half := len(data) / 2
		cur, err := e.appendBytes(sess, 0, data[:half])
		if err != nil {
			t.Fatalf("first append: %v", err)
		}
		if _, err := e.appendBytes(cur, int64(half), data[half:]); err != nil {
			t.Fatalf("second append: %v", err)
		}
		ops := e.ops.take()
		if ops["CreateMultipartUpload"] != 1 || ops["UploadPart"] != 1 || ops["CompleteMultipartUpload"] != 1 {
			t.Fatalf("two appends: S3 requests %v, want one multipart upload of one part", ops)
		}
		e.wantStored(sess.ID, data)
		if _, err := e.store.Session(t.Context(), sess.ID); err != nil {
			t.Fatal(err)
		}
		if b := e.session(sess.ID).Storage; bytes.Contains(b, []byte(`"put"`)) {
			t.Fatalf("multipart upload's state %s says put", b)
		}
	})
}

// TestDeleteDuringPut: a DELETE while a whole-upload append is reading
// its body cuts it (ErrDeleted), and leaves neither session nor object.
func TestDeleteDuringPut(t *testing.T) {
	onS3(t, func(t *testing.T, e *s3Env) {
		data := make([]byte, 1<<20)
		rand.Read(data)
		sess := e.created(int64(len(data)))
		done := e.appendInFlight(t, sess, data)
		waitLeased(t, e.svcEnv, sess.ID)
		if err := e.svc.Delete(t.Context(), "acme", sess.ID); err != nil {
			t.Fatalf("DELETE: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrDeleted) {
			t.Fatalf("the append: %v, want ErrDeleted", err)
		}
		if _, err := e.store.Session(t.Context(), sess.ID); !errors.Is(err, sessionstore.ErrNotFound) {
			t.Fatalf("session after DELETE: %v, want ErrNotFound", err)
		}
		if _, err := e.sink.Open(t.Context(), "uploads/"+sess.ID); !errors.Is(err, pipeline.ErrNoSuchUpload) {
			t.Fatalf("object after DELETE: %v, want ErrNoSuchUpload", err)
		}
		if ops := e.ops.take(); ops["PutObject"] != 0 || ops["CreateMultipartUpload"] != 0 {
			t.Fatalf("a cut whole append: S3 requests %v, want no put and no multipart upload", ops)
		}
	})
}
