// Package testsvc starts the real outside services the tests run against
// (Debian's redis-server, versitygw) on free loopback ports in temp dirs,
// and stops them when the test ends.
package testsvc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RedisBinary is the redis-server the tests run (Debian's package).
const RedisBinary = "/usr/bin/redis-server"

// redisCLIBinary creates clusters.
const redisCLIBinary = "/usr/bin/redis-cli"

// redisStartTimeout bounds how long a server may take to answer PING.
const redisStartTimeout = 10 * time.Second

// RedisServer is one redis-server process with its own port and dir. Stop
// and Start keep both, so a restarted server reloads its append-only file.
type RedisServer struct {
	t       testing.TB
	port    int
	dir     string
	cluster bool
	extra   []string
	// sentinelConf, when set, makes this process a Sentinel.
	sentinelConf string
	cmd          *exec.Cmd
	exited       chan struct{}
}

// StartRedis starts a standalone redis-server (appendonly, no RDB
// snapshots) and returns its URL, redis://127.0.0.1:PORT/0. It is killed
// when the test ends.
func StartRedis(t testing.TB) string {
	t.Helper()
	return StartRedisServer(t).URL()
}

// StartRedisServer starts a standalone redis-server and returns its handle,
// for tests that stop and restart it. extraArgs are added to the command
// line, e.g. "--appendfsync", "always".
func StartRedisServer(t testing.TB, extraArgs ...string) *RedisServer {
	t.Helper()
	requireRedis(t)
	s := &RedisServer{t: t, port: RedisFreePort(t), dir: t.TempDir(), extra: extraArgs}
	t.Cleanup(s.Kill)
	s.Start()
	return s
}

// StartRedisCluster starts three redis-server masters with cluster mode on,
// joins them with `redis-cli --cluster create`, waits for cluster_state:ok
// and returns the node addresses as a comma list (the --redis-url form).
func StartRedisCluster(t testing.TB) string {
	t.Helper()
	requireRedis(t)
	nodes := make([]*RedisServer, 3)
	addrs := make([]string, 3)
	for i := range nodes {
		s := &RedisServer{t: t, port: RedisFreePort(t), dir: t.TempDir(), cluster: true}
		t.Cleanup(s.Kill)
		s.Start()
		nodes[i], addrs[i] = s, s.Addr()
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.CommandContext(t.Context(), redisCLIBinary, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("testsvc: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(redisStartTimeout)
	for _, s := range nodes {
		for {
			info, err := RedisCommand(s.Addr(), "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("testsvc: redis cluster node %s not ok after %v: %q, %v", s.Addr(), redisStartTimeout, info, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return strings.Join(addrs, ",")
}

// StartRedisReplica starts a redis-server replicating primary (same
// options as StartRedisServer plus extraArgs) and waits until its
// replication link is up and primary counts it among its replicas.
func StartRedisReplica(t testing.TB, primary *RedisServer, extraArgs ...string) *RedisServer {
	t.Helper()
	// Without it the primary waits 5 s for more replicas before the sync.
	if _, err := RedisCommand(primary.Addr(), "CONFIG", "SET", "repl-diskless-sync-delay", "0"); err != nil {
		t.Fatalf("testsvc: redis primary %s: %v", primary.Addr(), err)
	}
	args := append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.port)}, extraArgs...)
	s := StartRedisServer(t, args...)
	deadline := time.Now().Add(redisStartTimeout)
	for {
		info, err := RedisCommand(s.Addr(), "INFO", "replication")
		if err == nil && strings.Contains(info, "master_link_status:up") {
			p, err := RedisCommand(primary.Addr(), "INFO", "replication")
			if err == nil && strings.Contains(p, "port="+strconv.Itoa(s.port)+",state=online") {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("testsvc: redis replica %s of %s not in sync after %v: %q, %v", s.Addr(), primary.Addr(), redisStartTimeout, info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RedisSentinelMaster is the master name StartRedisSentinel monitors.
const RedisSentinelMaster = "mymaster"

// StartRedisSentinel starts a standalone master and one Sentinel watching
// it (quorum 1), and returns the master's handle and the
// redis+sentinel://127.0.0.1:PORT/mymaster/0 URL.
func StartRedisSentinel(t testing.TB) (*RedisServer, string) {
	t.Helper()
	master := StartRedisServer(t)
	s := &RedisServer{t: t, port: RedisFreePort(t), dir: t.TempDir()}
	s.sentinelConf = filepath.Join(s.dir, "sentinel.conf")
	conf := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 5000\n",
		RedisSentinelMaster, master.port, RedisSentinelMaster)
	if err := os.WriteFile(s.sentinelConf, []byte(conf), 0o644); err != nil {
		t.Fatalf("testsvc: sentinel config: %v", err)
	}
	t.Cleanup(s.Kill)
	s.Start()
	return master, "redis+sentinel://" + s.Addr() + "/" + RedisSentinelMaster + "/0"
}

func requireRedis(t testing.TB) {
	t.Helper()
	for _, bin := range []string{RedisBinary, redisCLIBinary} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("testsvc: %s is missing (%v); install it with `apt-get install -y redis-server` (scripts/ does this)", bin, err)
		}
	}
}

// RedisFreePort returns a loopback port that is free, and whose cluster bus
// port (port+10000) is free too.
func RedisFreePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testsvc: listen: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if port+10000 > 65535 {
			l.Close()
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		l.Close()
		if err != nil {
			continue
		}
		bus.Close()
		return port
	}
	t.Fatal("testsvc: no free port pair for redis")
	return 0
}

// URL is the server's redis:// URL (database 0).
func (s *RedisServer) URL() string { return "redis://" + s.Addr() + "/0" }

// Addr is the server's host:port.
func (s *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Dir is the server's working directory (append-only file, log).
func (s *RedisServer) Dir() string { return s.dir }

// Start runs the server (again, after Stop or Kill) on the same port and dir
// and waits until it answers PING.
func (s *RedisServer) Start() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatalf("testsvc: redis %s already running", s.Addr())
	}
	args := []string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir,
		"--appendonly", "yes", "--save", "", "--daemonize", "no",
		"--protected-mode", "no", "--logfile", "redis.log",
	}
	if s.sentinelConf != "" {
		args = []string{s.sentinelConf, "--sentinel", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
			"--dir", s.dir, "--daemonize", "no", "--protected-mode", "no", "--logfile", "redis.log"}
	}
	if s.cluster {
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000")
	}
	args = append(args, s.extra...)
	cmd := exec.Command(RedisBinary, args...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("testsvc: start redis-server: %v", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	exited := s.exited
	go func() {
		_ = cmd.Wait() // why it stopped is in redis.log (logTail)
		close(exited)
	}()
	deadline := time.Now().Add(redisStartTimeout)
	for {
		reply, err := RedisCommand(s.Addr(), "PING")
		if err == nil && reply == "PONG" {
			return
		}
		select {
		case <-exited:
			s.cmd = nil
			s.t.Fatalf("testsvc: redis-server on %s exited at start: %s", s.Addr(), s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("testsvc: redis-server on %s did not answer PING within %v (%q, %v): %s",
				s.Addr(), redisStartTimeout, reply, err, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop shuts the server down gracefully (SIGTERM: the append-only file is
// flushed) and waits for it to exit.
func (s *RedisServer) Stop() { s.signal(syscall.SIGTERM) }

// Kill stops the server with SIGKILL and waits for it to exit. With the
// default appendfsync everysec, Redis may postpone its append-only write
// while a background fsync runs (right after start, for instance), so the
// last acknowledged writes can be lost; start the server with
// "--appendfsync", "always" where a test relies on them.
func (s *RedisServer) Kill() { s.signal(syscall.SIGKILL) }

func (s *RedisServer) signal(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	// Signal and Kill fail only on a process that already exited, which
	// exited reports.
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(redisStartTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

func (s *RedisServer) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// RedisCommand sends one command to addr over RESP and returns a simple,
// integer or bulk string reply. Enough for health checks in tests, without
// a client library.
func RedisCommand(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("testsvc: empty redis reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("testsvc: redis: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("testsvc: redis: nil or bad bulk reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("testsvc: redis: unsupported reply %q", line)
}
