package redis_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
	"github.com/roughy/ingest/sessionstore"
)

// replyLoser is a TCP relay to a Redis server that loses one reply: the
// first command that carries its marker reaches Redis and runs, but its
// answer is dropped and the client's connection cut, as a network failure
// after the request would. The client sees EOF and resends the command.
type replyLoser struct {
	ln     net.Listener
	target string
	marker atomic.Pointer[[]byte]
	lost   atomic.Int32
}

func startReplyLoser(t *testing.T, target string) *replyLoser {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	p := &replyLoser{ln: ln, target: target}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.relay(c) })
		}
	})
	return p
}

func (p *replyLoser) url() string { return "redis://" + p.ln.Addr().String() }

// arm makes the next command that contains marker lose its reply.
func (p *replyLoser) arm(marker string) {
	m := []byte(marker)
	p.marker.Store(&m)
}

func (p *replyLoser) relay(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	var drop atomic.Bool
	go func() {
		// Requests: a command seen whole in one read is enough here (the
		// marker sits in a claim of a few hundred bytes on loopback).
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if m := p.marker.Load(); m != nil && bytes.Contains(buf[:n], *m) && p.marker.CompareAndSwap(m, nil) {
					drop.Store(true)
				}
				if _, werr := s.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				s.Close()
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 && drop.Load() {
			// The command ran: its answer is lost with the connection.
			p.lost.Add(1)
			return
		}
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// directGrant stores a direct upload of an hour and returns the session
// and asset its claim stores.
func directGrant(t *testing.T, st sessionstore.Store) (sessionstore.Session, sessionstore.Asset) {
	t.Helper()
	id := "rd-" + rand.Text()
	now := time.Now().UTC().Truncate(time.Second)
	d := sessionstore.DirectUpload{ID: id, Account: "acme", Type: "video", Secret: []byte("secret"),
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	wa := sessionstore.Asset{ID: id, Account: "acme", SessionID: id, Type: "video", State: sessionstore.StateWaiting,
		SizeBytes: -1, StorageKey: "uploads/" + id, CreatedAt: now}
	if err := st.CreateDirectUpload(t.Context(), d, wa); err != nil {
		t.Fatalf("CreateDirectUpload: %v", err)
	}
	s := sessionstore.Session{ID: id, Account: "acme", AssetID: id, Length: 100, NextPart: 1, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	a := sessionstore.Asset{ID: id, Account: "acme", SessionID: id, Type: "video", State: sessionstore.StateUploading,
		SizeBytes: 100, StorageKey: "uploads/" + id, CreatedAt: now}
	return s, a
}

// TestRedisDirectClaimReplyLost: the reply to a claim that Redis ran is
// lost, and the Redis client sends the claim again on a new connection.
// The resent claim is the same request: it is granted, not refused as a
// second creation (which would leave the upload without its creator).
// Another request's claim, and every claim after a DELETE, are refused.
func TestRedisDirectClaimReplyLost(t *testing.T) {
	server := testsvc.StartRedisServer(t)
	loser := startReplyLoser(t, server.Addr())
	st := newRedis(t, loser.url())
	ctx := t.Context()

	// A first claim loads the script: the lost reply is then the claim's
	// own, not a NOSCRIPT.
	ws, wa := directGrant(t, st)
	if err := st.ClaimDirectUpload(ctx, ws.ID, "warm-"+rand.Text(), time.Now(), ws, wa); err != nil {
		t.Fatalf("ClaimDirectUpload: %v", err)
	}

	s, a := directGrant(t, st)
	claim := "claim-" + rand.Text()
	loser.arm(claim)
	if err := st.ClaimDirectUpload(ctx, s.ID, claim, time.Now(), s, a); err != nil {
		t.Errorf("claim whose first reply was lost: got %v, want nil", err)
	}
	if n := loser.lost.Load(); n != 1 {
		t.Fatalf("replies lost: %d, want 1 (the test did not cut the claim's reply)", n)
	}
	if got, err := st.Session(ctx, s.ID); err != nil || got.Length != s.Length {
		t.Errorf("Session after the claim: got %+v, %v; want the claimed session", got, err)
	}
	if err := st.ClaimDirectUpload(ctx, s.ID, "other-"+rand.Text(), time.Now(), s, a); !errors.Is(err, sessionstore.ErrExists) {
		t.Errorf("another request's claim: got %v, want ErrExists", err)
	}
	if _, err := st.DeleteUpload(ctx, s.ID); err != nil {
		t.Fatalf("DeleteUpload: %v", err)
	}
	for _, c := range []string{claim, "other-" + rand.Text()} {
		if err := st.ClaimDirectUpload(ctx, s.ID, c, time.Now(), s, a); !errors.Is(err, sessionstore.ErrExists) {
			t.Errorf("claim %s after DELETE: got %v, want ErrExists", c, err)
		}
	}
}
