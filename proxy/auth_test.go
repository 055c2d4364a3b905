package proxy

import (
	"testing"
	"time"
)

// TestKeyCacheEviction: evict forgets one key or all of them, and a lookup
// that started before an eviction does not cache its answer (the key may
// have been revoked after the store answered).
func TestKeyCacheEviction(t *testing.T) {
	var c keyCache
	now := time.Now()
	later := now.Add(time.Minute)
	c.put("a", "acme", later, c.generation())
	c.put("b", "globex", later, c.generation())
	c.evict("a")
	if acct, ok := c.get("a", now); ok {
		t.Errorf("get(a) after evict(a): got %q, want a miss", acct)
	}
	if acct, ok := c.get("b", now); !ok || acct != "globex" {
		t.Errorf("get(b) after evict(a): got %q %v, want globex", acct, ok)
	}

	gen := c.generation() // a lookup of "a" starts
	c.evict("a")          // the key is revoked meanwhile
	c.put("a", "acme", later, gen)
	if acct, ok := c.get("a", now); ok {
		t.Errorf("get(a) cached by a lookup that raced its revocation: got %q, want a miss", acct)
	}

	c.evict("")
	if acct, ok := c.get("b", now); ok {
		t.Errorf("get(b) after evict(\"\"): got %q, want a miss", acct)
	}
}
