package webhook

import (
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	for _, c := range []struct{ addr, want string }{
		{"127.0.0.1", "loopback"},
		{"127.255.0.9", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"::127.0.0.1", "loopback"}, // IPv4-compatible
		{"64:ff9b::7f00:1", "loopback"},
		{"64:ff9b::a9fe:a9fe", "link-local"}, // NAT64 of the metadata service
		{"2002:7f00:1::1", "loopback"},       // 6to4 of 127.0.0.1
		{"10.0.0.1", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.0.1", "private"},
		{"::ffff:192.168.0.1", "private"},
		{"100.64.0.1", "cgnat"},
		{"100.127.255.255", "cgnat"},
		{"169.254.169.254", "link-local"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"fd00::1", "ula"},
		{"fc00::1", "ula"},
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "unspecified"},
		{"::", "unspecified"},
		{"::ffff:0.0.0.0", "unspecified"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"ff02::1", "multicast"},
		{"255.255.255.255", "reserved"},
		{"192.0.2.1", "reserved"},
		{"2001:db8::1", "reserved"},
		{"64:ff9b:1::a00:1", "nat64"},
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"100.63.255.255", ""},
		{"100.128.0.0", ""},
		{"172.32.0.1", ""},
		{"::ffff:8.8.8.8", ""},
		{"64:ff9b::808:808", ""},
		{"2606:4700:4700::1111", ""},
		{"2001:4860:4860::8888", ""},
	} {
		if got := Classify(netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("Classify(%s): got %q, want %q", c.addr, got, c.want)
		}
	}
}

func TestCheckURL(t *testing.T) {
	allow := Targets{Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16")}}
	for _, c := range []struct {
		url            string
		none, allowing bool // accepted with no allow-list, with allow
	}{
		{"https://example.com/hook", true, true},
		{"http://hooks.example.com:8080/x?y=1", true, true},
		{"https://EXAMPLE.com./hook", true, true},
		{"https://8.8.8.8/hook", true, true},
		{"https://[2606:4700:4700::1111]/hook", true, true},
		{"http://127.0.0.1:8080/", false, true},
		{"http://localhost/", false, true},
		{"http://LOCALHOST./", false, true},
		{"http://api.localhost/", false, true},
		{"http://0.0.0.0/", false, false},
		{"http://[::ffff:127.0.0.1]/", false, true},
		{"http://[::1]/", false, false},
		{"http://u:p@127.0.0.1/", false, false},
		{"http://u@example.com/", false, false},
		{"http://169.254.169.254/latest/meta-data/", false, false},
		{"http://10.0.0.1/", false, false},
		{"http://10.1.2.3/", false, true},
		{"http://192.168.0.1/", false, false},
		{"http://[fd00::1]/", false, false},
		{"http://100.64.0.1/", false, false},
		{"http://[fe80::1]/", false, false},
		{"http://[fe80::1%25eth0]/", false, false},
		{"http://[64:ff9b::7f00:1]/", false, false},
		{"http://2130706433/", false, false},
		{"http://0x7f000001/", false, false},
		{"http://0x7F.1/", false, false},
		{"http://0177.0.0.1/", false, false},
		{"http://127.1/", false, false},
		{"http://127.0.0.01/", false, false},
		{"http://1.2.3.4.5/", false, false},
		{"http://exa_mple.com/", true, true},
		{"http://ex%61mple.com/", false, false},
		{"http://münchen.de/", false, false},
		{"http://xn--mnchen-3ya.de/", true, true},
		{"http://example.com:0/", false, false},
		{"http://example.com:080/", false, false},
		{"ftp://example.com/", false, false},
		{"http:example.com", false, false},
		{"//example.com/", false, false},
		{"http://127.0.0.1\\@example.com/", false, false},
	} {
		if err := (Targets{}).CheckURL(c.url); (err == nil) != c.none {
			t.Errorf("CheckURL(%q) with no allowed networks: got %v, want accepted %v", c.url, err, c.none)
		}
		if err := allow.CheckURL(c.url); (err == nil) != c.allowing {
			t.Errorf("CheckURL(%q) allowing 127.0.0.0/8, 10.1.0.0/16: got %v, want accepted %v", c.url, err, c.allowing)
		}
	}
}

func TestParseNetworks(t *testing.T) {
	got, err := ParseNetworks(" 127.0.0.0/8, 10.1.2.3/16 ,::1,fd00::/8,")
	want := []string{"127.0.0.0/8", "10.1.0.0/16", "::1/128", "fd00::/8"}
	if err != nil || len(got) != len(want) {
		t.Fatalf("ParseNetworks: got %v, %v; want %v", got, err, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("ParseNetworks[%d]: got %s, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "localhost", "10.0.0/8"} {
		if _, err := ParseNetworks(bad); err == nil {
			t.Fatalf("ParseNetworks(%q): got nil error, want one", bad)
		}
	}
}

// TestDialRefusedBeforeConnect: the delivery client refuses an address
// it resolved or was given before connecting: a loopback listener sees
// no connection, and a private address fails at once, never dialled.
func TestDialRefusedBeforeConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	d := New(Config{}, &fakeStore{})
	tr := d.cfg.Client.Transport.(*http.Transport)
	if tr.Proxy != nil {
		t.Fatal("the delivery client uses a proxy: the dialer would check the proxy's address, not the receiver's")
	}
	for _, addr := range []string{ln.Addr().String(), "10.0.0.1:80", "[::ffff:127.0.0.1]:" + portOf(ln), "169.254.169.254:80"} {
		start := time.Now()
		c, err := tr.DialContext(t.Context(), "tcp", addr)
		if err == nil {
			c.Close()
			t.Fatalf("dial %s: connected, want refused", addr)
		}
		if !IsBlocked(err) || Class(0, err) != ClassBlocked {
			t.Fatalf("dial %s: got %v (class %q), want a BlockedError", addr, err, Class(0, err))
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("dial %s took %v: it waited on the network", addr, took)
		}
	}
	// Allowed, the same listener is reached: the refusal above was the
	// dialer's.
	ok := New(Config{Targets: loopback}, &fakeStore{}).cfg.Client.Transport.(*http.Transport)
	c, err := ok.DialContext(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial %s allowing 127.0.0.0/8: %v", ln.Addr(), err)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for accepted.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := accepted.Load(); n != 1 {
		t.Fatalf("connections accepted: got %d, want 1 (the allowed dial only)", n)
	}
}

func portOf(ln net.Listener) string {
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}
