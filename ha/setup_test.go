//go:build ha

package ha_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// topology is a Redis setup started by one of the scripts in a temp dir.
type topology struct {
	t   *testing.T
	dir string
	env map[string]string
}

func scriptPath(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "scripts", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func requireRedisServer(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("the ha tests start their own Redis topologies and %s is not installed: apt-get install redis-server redis-tools: %v", bin, err)
		}
	}
}

// startScript runs `script start DIR` with extra environment and registers
// `script stop DIR` as cleanup.
func startScript(t *testing.T, script string, extraEnv ...string) *topology {
	t.Helper()
	requireRedisServer(t)
	dir := filepath.Join(t.TempDir(), "redis")
	path := scriptPath(t, script)
	cmd := exec.Command(path, "start", dir)
	cmd.Env = append(os.Environ(), extraEnv...)
	out, err := cmd.CombinedOutput()
	t.Cleanup(func() {
		if out, err := exec.Command(path, "stop", dir).CombinedOutput(); err != nil {
			t.Errorf("%s stop: %v: %s", script, err, out)
		}
	})
	if err != nil {
		t.Fatalf("%s start: %v: %s", script, err, out)
	}
	f, err := os.Open(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			env[k] = v
		}
	}
	return &topology{t: t, dir: dir, env: env}
}

func startSentinel(t *testing.T) *topology { return startScript(t, "redis-sentinel.sh") }

// startCluster starts 3 masters with one replica each and a 1 s node timeout.
func startCluster(t *testing.T) *topology {
	return startScript(t, "redis-cluster.sh", "REDIS_CLUSTER_REPLICAS=1", "REDIS_CLUSTER_NODE_TIMEOUT=1000")
}

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// kill9 sends SIGKILL to the redis-server this test's script started on addr.
func (tp *topology) kill9(addr string) {
	tp.t.Helper()
	b, err := os.ReadFile(filepath.Join(tp.dir, port(addr), "redis.pid"))
	if err != nil {
		tp.t.Fatalf("pid file of %s: %v", addr, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		tp.t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		tp.t.Fatalf("kill -9 %d (%s): %v", pid, addr, err)
	}
	// Wait until the port is closed, so a restart can bind it.
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer c.Close()
	for i := 0; i < 100; i++ {
		if c.Ping(context.Background()).Err() != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	tp.t.Fatalf("%s still answers after kill -9", addr)
}

// restart starts the killed data node again on its port and directory (no
// persistence: it comes back empty; Sentinel or the cluster makes it a
// replica of the new primary, which then resynchronises it).
func (tp *topology) restart(addr string, cluster bool) {
	tp.t.Helper()
	nd := filepath.Join(tp.dir, port(addr))
	args := []string{"--bind", "127.0.0.1", "--port", port(addr), "--save", "", "--appendonly", "no",
		"--dir", nd, "--daemonize", "yes", "--pidfile", filepath.Join(nd, "redis.pid"),
		"--logfile", filepath.Join(nd, "redis.log")}
	if cluster {
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "1000")
	}
	if out, err := exec.Command("redis-server", args...).CombinedOutput(); err != nil {
		tp.t.Fatalf("restarting %s: %v: %s", addr, err, out)
	}
}

// roleOf returns the "role" line of INFO replication on addr ("" if down).
func roleOf(addr string) string {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	s, err := c.Info(context.Background(), "replication").Result()
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(s, "\r\n") {
		if v, ok := strings.CutPrefix(l, "role:"); ok {
			return v
		}
	}
	return ""
}

// waitFor polls cond every 50 ms for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func clusterURL(addrs string) string {
	list := strings.Split(addrs, ",")
	u := "redis://" + list[0]
	for i, a := range list[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + a
	}
	return u
}

// clusterMasterOf returns the address of the master that owns key's slot
// and of one of its replicas (CLUSTER SHARDS, Redis 7).
func clusterMasterOf(t *testing.T, c *redis.ClusterClient, key string) (master, replica string) {
	t.Helper()
	slot := int(crc16slot(key))
	waitFor(t, 20*time.Second, fmt.Sprintf("slot %d to show a healthy master and replica in CLUSTER SHARDS", slot), func() bool {
		shards, err := c.ClusterShards(context.Background()).Result()
		if err != nil {
			return false
		}
		for _, sh := range shards {
			owns := false
			for _, r := range sh.Slots {
				owns = owns || (int64(slot) >= r.Start && int64(slot) <= r.End)
			}
			if !owns {
				continue
			}
			master, replica = "", ""
			for _, n := range sh.Nodes {
				addr := fmt.Sprintf("%s:%d", n.IP, n.Port)
				switch {
				case n.Role == "master" && n.Health == "online":
					master = addr
				case n.Role == "replica" && n.Health == "online":
					replica = addr
				}
			}
			return master != "" && replica != ""
		}
		return false
	})
	return master, replica
}

func crc16slot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

func splitFirst(list string) string  { return strings.Split(list, ",")[0] }
func splitSecond(list string) string { return strings.Split(list, ",")[1] }

func newPlain(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
}

func clusterClient(t *testing.T, b interface{ Client() redis.UniversalClient }) *redis.ClusterClient {
	t.Helper()
	cc, ok := b.Client().(*redis.ClusterClient)
	if !ok {
		t.Fatalf("the bus's client is %T, not a *redis.ClusterClient", b.Client())
	}
	return cc
}

// inSync reports whether the replica at addr has its link to the master up.
func inSync(addr string) bool {
	c := newPlain(addr)
	defer c.Close()
	s, err := c.Info(context.Background(), "replication").Result()
	return err == nil && strings.Contains(s, "master_link_status:up")
}
