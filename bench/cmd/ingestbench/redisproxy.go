package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// redisProxy sits between the roughy nodes and redis-server and counts, on
// the wire, what INFO commandstats cannot tell apart: commands the clients
// sent (not those a Lua script ran), round trips (a command sent while none
// of the connection's earlier ones is outstanding starts one; a pipeline is
// one), and each command's latency from request to reply. It parses RESP2
// and RESP3 in both directions and forwards every message unchanged.
type redisProxy struct {
	ln       net.Listener
	upstream string

	mu    sync.Mutex
	stats map[string]*cmdStats // by command name; EVALSHA by script SHA
	trips int64
	names map[string]string // script SHA prefix → name
}

// cmdStats are the calls and latencies of one command name.
type cmdStats struct {
	calls int64
	lat   []time.Duration
}

func startRedisProxy(upstream string) (*redisProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("ingestbench: redis proxy listen: %w", err)
	}
	p := &redisProxy{ln: ln, upstream: upstream, stats: map[string]*cmdStats{}, names: scriptNames()}
	go p.accept()
	return p, nil
}

func (p *redisProxy) addr() string { return p.ln.Addr().String() }

func (p *redisProxy) close() { p.ln.Close() }

func (p *redisProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

// snapshot returns the counters and resets them.
func (p *redisProxy) snapshot() (map[string]*cmdStats, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, t := p.stats, p.trips
	p.stats, p.trips = map[string]*cmdStats{}, 0
	return s, t
}

// pending is one command awaiting its reply.
type pending struct {
	name string
	sent time.Time
}

// serve relays one client connection to redis, timing each command from
// its last byte to its reply's.
func (p *redisProxy) serve(client net.Conn) {
	defer client.Close()
	server, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		slog.Warn("redis proxy: dial upstream", "err", err)
		return
	}
	defer server.Close()
	var mu sync.Mutex
	var queue []pending
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer client.Close()
		r := bufio.NewReaderSize(server, 64<<10)
		var out []byte
		for {
			out = out[:0]
			kind, err := readRESP(r, &out, nil)
			if err != nil {
				return
			}
			// The reply's command leaves the queue before the client
			// sees the reply: a command the client sends after reading it
			// must find the queue empty and count as a new round trip.
			if kind != '>' && kind != '|' { // push or attribute: no reply to pop
				mu.Lock()
				if len(queue) > 0 {
					pd := queue[0]
					queue = queue[1:]
					p.record(pd.name, time.Since(pd.sent))
				}
				mu.Unlock()
			}
			if _, err := client.Write(out); err != nil {
				return
			}
		}
	}()
	r := bufio.NewReaderSize(client, 64<<10)
	var out []byte
	// inWrite: the command just read was followed by bytes the client had
	// already sent, so the next one is part of the same pipeline even if
	// redis answered everything before it while the proxy parsed.
	inWrite := false
	for {
		out = out[:0]
		var args []string
		if _, err := readRESP(r, &out, &args); err != nil {
			break
		}
		name := p.commandName(args)
		mu.Lock()
		if len(queue) == 0 && !inWrite {
			p.mu.Lock()
			p.trips++
			p.mu.Unlock()
		}
		queue = append(queue, pending{name: name, sent: time.Now()})
		mu.Unlock()
		inWrite = r.Buffered() > 0
		if _, err := server.Write(out); err != nil {
			break
		}
	}
	server.Close()
	<-done
}

// commandName names a command by its arguments for the statistics: the
// command in lower case, and for EVALSHA the script's name (or the first 8
// digits of its SHA-1).
func (p *redisProxy) commandName(args []string) string {
	if len(args) == 0 {
		return "?"
	}
	name := strings.ToLower(args[0])
	if (name == "evalsha" || name == "evalsha_ro") && len(args) > 1 {
		sha := args[1][:min(8, len(args[1]))]
		if n, ok := p.names[sha]; ok {
			sha = n
		}
		name += ":" + sha
	}
	return name
}

func (p *redisProxy) record(name string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats[name]
	if s == nil {
		s = &cmdStats{}
		p.stats[name] = s
	}
	s.calls++
	s.lat = append(s.lat, d)
}

// readBulk reads the payload of a bulk value whose length line said size
// (-1: null, no payload), as readRESP does.
func readBulk(r *bufio.Reader, size string, out *[]byte, args *[]string) error {
	n, err := strconv.Atoi(size)
	if err != nil {
		return errRESP
	}
	if n < 0 {
		return nil
	}
	start := len(*out)
	*out = append(*out, make([]byte, n+2)...)
	if _, err := io.ReadFull(r, (*out)[start:]); err != nil {
		return err
	}
	if args != nil {
		*args = append(*args, string((*out)[start:start+n]))
	}
	return nil
}

var errRESP = errors.New("ingestbench: malformed RESP")

// scriptNameRE finds `var luaX = goredis.NewScript(` + "`src`" + `)` in the
// Redis store's source (go-redis is imported as goredis there).
var scriptNameRE = regexp.MustCompile("(?s)var (lua\\w+) = (?:go)?redis\\.NewScript\\(`(.*?)`\\)")

// scriptNames maps the first 8 hex digits of each Lua script's SHA-1 (what
// EVALSHA sends) to its Go variable name, read from
// sessionstore/redis/lua.go when the harness runs from the repo root.
func scriptNames() map[string]string {
	out := map[string]string{}
	src, err := os.ReadFile(filepath.Join("sessionstore", "redis", "lua.go"))
	if err != nil {
		return out
	}
	for _, m := range scriptNameRE.FindAllSubmatch(src, -1) {
		sum := sha1.Sum(m[2])
		out[hex.EncodeToString(sum[:])[:8]] = strings.TrimPrefix(string(m[1]), "lua")
	}
	return out
}

// readRESP reads one RESP2/RESP3 value from r, appending its raw bytes to
// out; when args is not nil, the top-level array's bulk strings (a client
// command) are collected into it. It returns the value's type byte.
func readRESP(r *bufio.Reader, out *[]byte, args *[]string) (byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	*out = append(*out, line...)
	if len(line) < 3 {
		return 0, errRESP
	}
	kind := line[0]
	body := string(line[1 : len(line)-2])
	switch kind {
	case '+', '-', ':', '_', ',', '#', '(':
		return kind, nil
	case '$', '!', '=':
		if err := readBulk(r, body, out, args); err != nil {
			return 0, err
		}
		return kind, nil
	case '*', '~', '>', '%', '|':
		n, err := strconv.Atoi(body)
		if err != nil {
			return 0, errRESP
		}
		if kind == '%' || kind == '|' {
			n *= 2
		}
		for range max(n, 0) {
			if _, err := readRESP(r, out, args); err != nil {
				return 0, err
			}
		}
		return kind, nil
	default:
		// Inline command (e.g. from redis-cli): one line of words.
		if args != nil {
			*args = append(*args, strings.Fields(strings.TrimSpace(string(line)))...)
		}
		return kind, nil
	}
}
