//go:build faults

package faults

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a redis-server of the test's own on a loopback port, with an
// append-only file fsynced on every write, so that it can be stopped and
// restarted on the same port and data.
type redisServer struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// startRedisServer starts redis-server on 127.0.0.1:port (a free port if 0)
// with its data in dir, and waits (10 s) until it answers PING.
func startRedisServer(t *testing.T, dir string, port int) *redisServer {
	t.Helper()
	bin := os.Getenv("REDIS_SERVER")
	if bin == "" {
		bin = "redis-server"
	}
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("the restart test starts its own redis-server and none is installed: apt-get install redis-server (or set REDIS_SERVER): %v", err)
	}
	if port == 0 {
		port = freePort(t)
	}
	s := &redisServer{t: t, port: port, dir: dir, done: make(chan struct{})}
	s.cmd = exec.Command(bin,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--protected-mode", "yes",
		"--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--dir", dir, "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log"))
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { s.stop(syscall.SIGKILL) })

	c := redis.NewClient(&redis.Options{Addr: s.addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return s
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server on port %d exited at start: %s", port, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on port %d did not answer PING in 10 s: %v", port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *redisServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// stop sends sig to the server (SIGTERM: a clean shutdown, the AOF flushed)
// and waits (10 s, then SIGKILL) for it to exit.
func (s *redisServer) stop(sig syscall.Signal) {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(sig) // by pid: the server this test started
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.t.Errorf("redis-server pid %d did not exit on %v in 10 s; killing it", s.cmd.Process.Pid, sig)
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
