package webhook

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
)

// Targets decides which receivers deliveries may reach. A webhook URL is
// chosen by an API client, so without it the server would POST to its own
// loopback, its cloud's metadata service (169.254.169.254) or any host of
// its private network on the client's behalf. The zero value refuses every
// address that is not public unicast.
type Targets struct {
	// Allowed are networks an operator runs receivers in, reachable
	// though non-public (e.g. 10.1.0.0/16); empty by default.
	Allowed []netip.Prefix
}

// BlockedError is a refused receiver address or URL.
type BlockedError struct {
	// Reason names the refused class ("loopback", "private", …) or form
	// ("userinfo", "numeric host", …).
	Reason string
}

func (e *BlockedError) Error() string { return "webhook: receiver refused: " + e.Reason }

// ParseNetworks parses a comma list of CIDRs (a bare IP is its own /32 or
// /128), as --webhook-allowed-networks takes it.
func ParseNetworks(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for p := range strings.SplitSeq(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !strings.Contains(p, "/") {
			ip, err := netip.ParseAddr(p)
			if err != nil {
				return nil, fmt.Errorf("webhook: allowed network %q: %w", p, err)
			}
			out = append(out, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			continue
		}
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("webhook: allowed network %q: %w", p, err)
		}
		out = append(out, pfx.Masked())
	}
	return out, nil
}

// CheckURL refuses a receiver URL that is not http(s), carries userinfo
// (credentials the server would send along, and a classic way to
// disguise the host), names its host in any form but a plain DNS name or
// a canonical IP address, or names a refused address or localhost. A DNS
// name is not resolved here: it may change, so every connection checks
// the address it dials (Dialer).
func (t Targets) CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return &BlockedError{Reason: "not an absolute http or https URL"}
	}
	if u.User != nil || strings.Contains(u.Host, "@") {
		return &BlockedError{Reason: "userinfo"}
	}
	if !validPort(u.Port()) {
		return &BlockedError{Reason: "port"}
	}
	return t.checkHost(u)
}

// validPort reports whether p is empty or a decimal port from 1 to 65535
// without leading zeros.
func validPort(p string) bool {
	if p == "" {
		return true
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && p[0] != '0'
}

// checkHost is CheckURL's check of u's host: a canonical IP address that
// checkAddr allows, or a plain DNS name (localhost is loopback).
func (t Targets) checkHost(u *url.URL) error {
	host := u.Hostname()
	if strings.HasPrefix(u.Host, "[") {
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return &BlockedError{Reason: "not a canonical IP address"}
		}
		return t.checkAddr(ip)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		// netip takes only dotted-quad decimal IPv4, without leading
		// zeros: the one form every resolver reads alike.
		return t.checkAddr(ip)
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if !dnsName(name) {
		return &BlockedError{Reason: "not a DNS name or canonical IP address"}
	}
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		// RFC 6761: always loopback, whatever DNS says.
		return t.checkAddr(netip.AddrFrom4([4]byte{127, 0, 0, 1}))
	}
	return nil
}

// dnsName reports whether s is a plain DNS name: dot-separated labels of
// letters, digits, '-' and '_', none empty or over 63 bytes, and a last
// label that does not read as a number. Resolvers (inet_aton, browsers'
// URL parsers) take "2130706433", "0x7f000001", "0177.0.0.1" or "127.1"
// for 127.0.0.1; a host whose last label is numeric is one of those.
func dnsName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if !dnsLabel(l) {
			return false
		}
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" {
		return false
	}
	if h, ok := strings.CutPrefix(last, "0x"); ok && strings.Trim(h, "0123456789abcdef") == "" {
		return false
	}
	return true
}

// dnsLabel reports whether l is a DNS label dnsName takes: 1 to 63
// letters, digits, '-' and '_'.
func dnsLabel(l string) bool {
	if l == "" || len(l) > 63 {
		return false
	}
	for _, c := range []byte(l) {
		letter := 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
		if !letter {
			return false
		}
	}
	return true
}

// checkAddr refuses ip unless it is public or in an allowed network.
func (t Targets) checkAddr(ip netip.Addr) error {
	for _, p := range t.Allowed {
		if p.Contains(ip) || p.Contains(ip.Unmap()) {
			return nil
		}
	}
	if class := Classify(ip); class != "" {
		return &BlockedError{Reason: class}
	}
	return nil
}

// Control is a net.Dialer Control hook: it refuses a connection to an
// address Targets refuses, after resolution and before any packet is
// sent, so a name that resolves (or rebinds) to an internal address is
// caught at every connection.
func (t Targets) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &BlockedError{Reason: "unparsable address"}
	}
	return t.checkAddr(ap.Addr())
}

// Dialer returns a dialer that connects only to addresses t allows.
func (t Targets) Dialer() *net.Dialer {
	return &net.Dialer{Control: t.Control}
}

// blockedPrefixes are the non-public ranges, by class. IPv4-mapped,
// IPv4-compatible, NAT64 and 6to4 addresses are classified by the IPv4
// address they carry (Classify).
var blockedPrefixes = []struct {
	class string
	p     netip.Prefix
}{
	{"unspecified", netip.MustParsePrefix("0.0.0.0/8")}, // "this network": 0.0.0.0 reaches the host itself
	{"private", netip.MustParsePrefix("10.0.0.0/8")},
	{"cgnat", netip.MustParsePrefix("100.64.0.0/10")},
	{"loopback", netip.MustParsePrefix("127.0.0.0/8")},
	{"link-local", netip.MustParsePrefix("169.254.0.0/16")}, // cloud metadata services
	{"private", netip.MustParsePrefix("172.16.0.0/12")},
	{"reserved", netip.MustParsePrefix("192.0.0.0/24")},
	{"reserved", netip.MustParsePrefix("192.0.2.0/24")},
	{"private", netip.MustParsePrefix("192.168.0.0/16")},
	{"reserved", netip.MustParsePrefix("198.18.0.0/15")},
	{"reserved", netip.MustParsePrefix("198.51.100.0/24")},
	{"reserved", netip.MustParsePrefix("203.0.113.0/24")},
	{"multicast", netip.MustParsePrefix("224.0.0.0/4")},
	{"reserved", netip.MustParsePrefix("240.0.0.0/4")}, // and broadcast

	{"unspecified", netip.MustParsePrefix("::/128")},
	{"loopback", netip.MustParsePrefix("::1/128")},
	{"nat64", netip.MustParsePrefix("64:ff9b:1::/48")}, // local-use NAT64: its IPv4 part is not at a fixed place
	{"reserved", netip.MustParsePrefix("100::/64")},
	{"reserved", netip.MustParsePrefix("2001::/23")}, // IETF protocol assignments, Teredo
	{"reserved", netip.MustParsePrefix("2001:db8::/32")},
	{"ula", netip.MustParsePrefix("fc00::/7")},
	{"link-local", netip.MustParsePrefix("fe80::/10")},
	{"private", netip.MustParsePrefix("fec0::/10")}, // deprecated site-local
	{"multicast", netip.MustParsePrefix("ff00::/8")},
}

var (
	nat64Prefix  = netip.MustParsePrefix("64:ff9b::/96")
	compatPrefix = netip.MustParsePrefix("::/96")
	sixToFour    = netip.MustParsePrefix("2002::/16")
)

// Classify names the class of a non-public address ("loopback",
// "private", "link-local", "cgnat", "ula", "unspecified", "multicast",
// "nat64", "reserved"), or "" for a public unicast one. An address that
// carries an IPv4 address (mapped, compatible, NAT64 64:ff9b::/96, 6to4)
// is classified by it: [::ffff:127.0.0.1] is loopback.
func Classify(ip netip.Addr) string {
	ip = ip.WithZone("")
	if ip.Is6() {
		b := ip.As16()
		var v4 [4]byte
		switch {
		case ip.Is4In6():
			return Classify(ip.Unmap())
		case nat64Prefix.Contains(ip), compatPrefix.Contains(ip) && ip != netip.IPv6Unspecified() && ip != netip.IPv6Loopback():
			copy(v4[:], b[12:])
			return Classify(netip.AddrFrom4(v4))
		case sixToFour.Contains(ip):
			copy(v4[:], b[2:6])
			return Classify(netip.AddrFrom4(v4))
		}
	}
	for _, bp := range blockedPrefixes {
		if bp.p.Contains(ip) {
			return bp.class
		}
	}
	return ""
}

// IsBlocked reports whether err is (or wraps) a refused receiver.
func IsBlocked(err error) bool {
	_, ok := errors.AsType[*BlockedError](err)
	return ok
}
