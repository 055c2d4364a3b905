package main

import (
	"fmt"
	"net/netip"
	"strings"
	"syscall"
)

// raiseFDLimit raises the soft RLIMIT_NOFILE to the hard limit and returns
// the soft limit now in force. Every client connection costs a descriptor;
// a low soft limit (1024 is common) let a few idle connections exhaust the
// process. The Go runtime does the same at start since Go 1.19;
// doing it here makes it explicit and gives the limit the caps derive from.
func raiseFDLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("roughy: getrlimit: %w", err)
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			return lim.Cur, fmt.Errorf("roughy: raise the file descriptor limit to %d: %w", lim.Max, err)
		}
		lim = raised
	}
	return lim.Cur, nil
}

// Connection caps derived from the descriptor limit.
const (
	maxDerivedConns = 1 << 18 // fasthttp's DefaultConcurrency
	maxDerivedPerIP = 1024
)

// connLimit derives the default --max-conns from the descriptor limit:
// half of the descriptors, the other half staying for upload files, the
// store, and S3 and Redis connections.
func connLimit(fds uint64) int {
	return int(min(max(fds/2, 1), maxDerivedConns))
}

// perIPLimit derives the default --max-conns-per-ip from --max-conns: a
// quarter of it, at most 1024, so that a handful of addresses cannot take
// every connection.
func perIPLimit(maxConns int) int {
	return min(max(maxConns/4, 1), maxDerivedPerIP)
}

// parsePrefixes parses a comma list of IP addresses and CIDR prefixes
// (--trusted-proxies); an address is a prefix of one address.
func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, p := range splitList(s) {
		if strings.Contains(p, "/") {
			pfx, err := netip.ParsePrefix(p)
			if err != nil {
				return nil, fmt.Errorf("roughy: --trusted-proxies: %w", err)
			}
			out = append(out, pfx.Masked())
			continue
		}
		ip, err := netip.ParseAddr(p)
		if err != nil {
			return nil, fmt.Errorf("roughy: --trusted-proxies: %w", err)
		}
		ip = ip.Unmap()
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}
