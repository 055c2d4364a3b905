package redis

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/roughy/ingest/sessionstore"
)

// Node liveness and release requests on Redis.
//
// Every Redis store is a node with a random id. It keeps the key
// roughy:{nodes}:<id> alive (SET PX NodeTTL, every NodeRefresh) until
// Close, which deletes it. A lease records its holder node in the session
// hash; AcquireLease takes over a lease whose holder's key is gone.
//
// Release requests are Redis pub/sub messages on the holder's own channel
// roughy:{nodes}:release:<id>. Pub/sub rather than a flag the holder's
// keeper polls: a flag costs every holder a read per lease per poll
// interval, whether anyone waits or not, and its latency is the poll
// interval; a message costs nothing until a request is actually waiting
// and arrives in one network hop. Messages are fire and forget, so the
// asker repeats its request while it waits (proxy) and polls the lease
// itself: a lost message delays a takeover, it never blocks one.
const (
	redisNodePrefix    = "roughy:{nodes}:"
	redisReleasePrefix = "roughy:{nodes}:release:"
)

func redisNodeKey(node string) string { return redisNodePrefix + node }

// startHeartbeat writes the node's liveness record once (so that leases
// taken right after New are not seen as held by a dead node) and then
// refreshes it until stopHeartbeat.
func (r *Store) startHeartbeat(ctx context.Context) error {
	if err := r.beat(ctx); err != nil {
		return err
	}
	r.hbStop = make(chan struct{})
	r.hbWG.Go(func() {
		t := time.NewTicker(sessionstore.NodeRefresh)
		defer t.Stop()
		for {
			select {
			case <-r.hbStop:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), sessionstore.NodeRefresh)
			if err := r.beat(ctx); err != nil {
				r.log.Warn("node liveness record not refreshed", "node", r.node, "err", err)
			}
			cancel()
		}
	})
	return nil
}

func (r *Store) beat(ctx context.Context) error {
	if err := r.client.Set(ctx, redisNodeKey(r.node), "1", sessionstore.NodeTTL).Err(); err != nil {
		return redisErr("node heartbeat", err)
	}
	return nil
}

// stopHeartbeat ends the refreshes and deletes the record: a node that
// shuts down cleanly leaves no lease waiting for its record to run out.
func (r *Store) stopHeartbeat() {
	if r.hbStop == nil {
		return
	}
	close(r.hbStop)
	r.hbWG.Wait()
	r.hbStop = nil
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = r.client.Del(ctx, redisNodeKey(r.node)).Err()
}

// Node returns this store's node id.
func (r *Store) Node() string { return r.node }

// nodeLive reports whether node's liveness record exists.
func (r *Store) nodeLive(ctx context.Context, node string) (bool, error) {
	n, err := r.client.Exists(ctx, redisNodeKey(node)).Result()
	if err != nil {
		return false, redisErr("node liveness", err)
	}
	return n == 1, nil
}

// Release request messages: "d <id> <token>" for a DELETE, "a <id>
// <token>" otherwise. A message without the token (an older node's) is
// a request with token 0.
func encodeRelease(rr sessionstore.ReleaseRequest) string {
	kind := "a "
	if rr.Delete {
		kind = "d "
	}
	return kind + rr.SessionID + " " + strconv.FormatInt(rr.Token, 10)
}

func decodeRelease(msg string) (sessionstore.ReleaseRequest, bool) {
	kind, rest, ok := strings.Cut(msg, " ")
	id, tok, _ := strings.Cut(rest, " ")
	if !ok || id == "" || (kind != "a" && kind != "d") {
		return sessionstore.ReleaseRequest{}, false
	}
	token, _ := strconv.ParseInt(tok, 10, 64)
	return sessionstore.ReleaseRequest{SessionID: id, Delete: kind == "d", Token: token}, true
}

// RequestRelease publishes rr on holder's release channel.
//
// PUBLISH answers how many clients got the message. A serving node
// subscribes before it takes any lease and keeps its subscription for as
// long as it lives (watching it, and subscribing again when it vanishes:
// see releaseWatch), so answers of 0 that keep coming mean the holder's
// process is gone (a kill -9 closes its sockets, and Redis drops the
// subscription at once): its liveness record is deleted, and the asker's
// next AcquireLease takes the lease over without waiting for the record
// to run out (p95 ≤ 2 s from a kill to the resume). One answer
// of 0 is not enough: a live node's subscription can vanish for a moment
// (a reconnect; on Cluster, a migration of the channel's slot unsubscribes
// it), and its watcher subscribes again within releaseDeadAfter. A node
// that still lost its leases this way is kept safe by the fencing token,
// and its heartbeat brings the record back.
//
// On Cluster a plain PUBLISH counts only the subscribers of the node it
// reached, so release channels are sharded there (SPUBLISH/SSUBSCRIBE):
// the channel lives on the master of its slot, which knows every
// subscriber, and the count means the same as on standalone.
func (r *Store) RequestRelease(ctx context.Context, holder string, rr sessionstore.ReleaseRequest) error {
	n, err := r.publishRelease(ctx, holder, encodeRelease(rr))
	if err != nil {
		return redisErr("release request", err)
	}
	if holder == r.node || !r.unanswered(holder, n == 0, time.Now()) {
		return nil
	}
	if err := r.client.Del(ctx, redisNodeKey(holder)).Err(); err != nil {
		return redisErr("drop dead node", err)
	}
	r.log.Warn("release requests reach no subscriber: node taken for dead", "node", holder)
	return nil
}

// publishRelease publishes msg on node's release channel and answers how
// many subscribers got it.
func (r *Store) publishRelease(ctx context.Context, node, msg string) (int64, error) {
	channel := redisReleasePrefix + node
	if r.cluster {
		return r.client.SPublish(ctx, channel, msg).Result()
	}
	return r.client.Publish(ctx, channel, msg).Result()
}

// acquireOnce runs the acquire script. steal names the fencing token of a
// lease whose holder was found dead by the caller (Cluster), "" for none;
// fence is the head fence the caller's request read ("" for none: see
// AcquireLeaseFenced). On a refusal it returns the holder and the current token.
func (r *Store) acquireOnce(ctx context.Context, id string, ttl time.Duration, parts int32, steal, fence string) (out []any, holder, token string, err error) {
	prefix := redisNodePrefix
	if r.cluster {
		// The holder's liveness key lives in another slot, out of the
		// script's reach: the caller checks it (see AcquireLease).
		prefix = ""
	}
	// Waited for as a commit is (Options): a lease rolled back by a
	// failover would hand its fencing token and part numbers out again.
	out, err = r.runScriptWaited(ctx, "acquire lease", redisSessionKey(id), luaAcquire,
		[]string{redisSessionKey(id), redisLeaseKey(id)},
		max(redisMillis(ttl), 1), parts, sessionstore.MaxPartNumber, r.node, prefix, steal, fence)
	if tok, ok := redisFirstInt(out); ok && err != nil {
		// Taken but not acknowledged by the replicas: let it go, so that
		// the retry of the request is not locked out by it. If that fails
		// too, the lease ends at its TTL; err is what the caller needs.
		_, _ = r.runScript(context.WithoutCancel(ctx), "release lease", luaRelease, []string{redisLeaseKey(id)},
			strconv.FormatInt(tok, 10))
		return nil, "", "", err
	}
	if err != nil && len(out) >= 2 {
		holder, _ = out[0].(string)
		token, _ = out[1].(string)
	}
	return out, holder, token, err
}
