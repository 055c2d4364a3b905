package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/internal/testsvc"
)

// post creates a one-byte upload on n with the API key secret and answers
// the status.
func post(t *testing.T, n *node, secret string) answer {
	t.Helper()
	return mustSend(t, "POST", n.URL+tusPath, map[string]string{
		"Authorization":   "Bearer " + secret,
		"Upload-Length":   "1",
		"Upload-Metadata": "type dmlkZW8=",
	}, nil)
}

// readyz GETs n's /readyz.
func readyz(t *testing.T, n *node) answer {
	t.Helper()
	return mustSend(t, "GET", n.URL+"/readyz", nil, nil)
}

// TestFleetStaticKeysSurviveDataLoss: after FLUSHALL (what a failover to an
// empty replica does), the static key of ROUGHY_API_KEYS still works on
// every node (from the node's memory; the key cache is off, so no cached
// lookup hides the store), each node's /readyz reports the loss once
// (503 store_data_lost), and the nodes put the static key back into Redis.
func TestFleetStaticKeysSurviveDataLoss(t *testing.T) {
	f := startFleet(t, 2, "--key-cache-ttl", "0")
	for i, n := range f.nodes {
		if a := readyz(t, n); a.Status != http.StatusOK {
			t.Fatalf("/readyz on node %d before the loss: got %d %s, want 200", i, a.Status, a.Body)
		}
	}
	if _, err := testsvc.RedisCommand(f.redis.Addr(), "FLUSHALL"); err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
	for i, n := range f.nodes {
		if a := post(t, n, fleetKey); a.Status != http.StatusCreated {
			t.Errorf("POST with the static key on node %d after FLUSHALL: got %d %s, want 201", i, a.Status, a.Body)
		}
	}
	for i, n := range f.nodes {
		a := readyz(t, n)
		var body struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		err := json.Unmarshal(a.Body, &body)
		if err != nil || a.Status != http.StatusServiceUnavailable || body.Error.Code != "store_data_lost" {
			t.Errorf("/readyz on node %d after FLUSHALL: got %d %s, want 503 store_data_lost", i, a.Status, a.Body)
		}
		if a := readyz(t, n); a.Status != http.StatusOK {
			t.Errorf("/readyz on node %d after it reported the loss: got %d %s, want 200", i, a.Status, a.Body)
		}
	}
	keys, err := f.store(t).Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := apikey.Record("acme", fleetKey)
	found := false
	for _, k := range keys {
		found = found || (k.ID == want.ID && k.Hash == want.Hash && !k.Revoked)
	}
	if !found {
		t.Errorf("keys in Redis after the nodes reported the loss: got %+v, want the static key %s again", keys, want.ID)
	}
}

var keyRE = regexp.MustCompile(`rk_live_[a-z0-9]+`)

// keysCmd runs `roughy keys …` against the fleet's Redis.
func (f *fleet) keysCmd(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, roughyBin, append(append([]string{"keys"}, args...),
		"--sessions", "redis", "--redis-url", f.redisURL)...)
	cmd.Env = testsvc.CleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("roughy keys %v: %v\n%s%s", args, err, out.String(), errb.String())
	}
	return out.String()
}

// TestFleetRevokeIsImmediate: a key used on both nodes (so both cached it,
// with the default 10 s key cache) is refused on both as soon as `roughy
// keys revoke` returns; the same for a static key. The nodes get the
// revocation over Redis pub/sub; the 1 s allowed below is for the message
// to cross the loopback, far below the cache's 10 s.
func TestFleetRevokeIsImmediate(t *testing.T) {
	f := startFleet(t, 2)
	secret := keyRE.FindString(f.keysCmd(t, "create", "--account", "hooli"))
	if secret == "" {
		t.Fatal("keys create printed no rk_live_ key")
	}
	for _, k := range []struct{ name, secret, id string }{
		{"created key", secret, apikey.Record("hooli", secret).ID},
		{"static key", fleetKey, apikey.Record("acme", fleetKey).ID},
	} {
		for i, n := range f.nodes {
			if a := post(t, n, k.secret); a.Status != http.StatusCreated {
				t.Fatalf("POST with the %s on node %d: got %d %s, want 201", k.name, i, a.Status, a.Body)
			}
		}
		if out := f.keysCmd(t, "revoke", k.id); !strings.Contains(out, "revoked") {
			t.Fatalf("keys revoke %s: %q", k.id, out)
		}
		revoked := time.Now()
		for i, n := range f.nodes {
			for {
				a := post(t, n, k.secret)
				if a.Status == http.StatusUnauthorized {
					t.Logf("%s refused on node %d %v after the revocation", k.name, i, time.Since(revoked))
					break
				}
				if time.Since(revoked) > time.Second {
					t.Fatalf("POST with the revoked %s on node %d %v after keys revoke: got %d, want 401",
						k.name, i, time.Since(revoked), a.Status)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}
