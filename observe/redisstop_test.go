package observe_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/observe"
	"github.com/shared-infra/eventbus/router"
)

// ownRedis is a redis-server of the test's own, on a free loopback port,
// so that the test may stop and restart it.
type ownRedis struct {
	t        *testing.T
	port     int
	password string
	dir      string
	cmd      *exec.Cmd
}

func startOwnRedis(t *testing.T, password string) *ownRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("this test starts and stops its own Redis and needs redis-server in PATH (apt-get install redis-server): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	s := &ownRedis{t: t, port: port, password: password, dir: t.TempDir()}
	s.start(bin)
	t.Cleanup(s.stop)
	return s
}

func (s *ownRedis) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

func (s *ownRedis) url() string { return fmt.Sprintf("redis://:%s@%s/0", s.password, s.addr()) }

func (s *ownRedis) start(bin string) {
	s.t.Helper()
	s.cmd = exec.Command(bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--requirepass", s.password, "--dir", s.dir, "--loglevel", "warning")
	require.NoError(s.t, s.cmd.Start())
	c := redis.NewClient(&redis.Options{Addr: s.addr(), Password: s.password})
	defer c.Close()
	require.Eventually(s.t, func() bool { return c.Ping(context.Background()).Err() == nil }, 10*time.Second, 20*time.Millisecond,
		"own redis-server on %s did not answer", s.addr())
}

// shutdown stops the server as an operator would (SHUTDOWN NOSAVE).
func (s *ownRedis) shutdown() {
	s.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.addr(), Password: s.password})
	defer c.Close()
	_ = c.ShutdownNoSave(context.Background()).Err() // the connection drops: an error is expected
	_ = s.cmd.Wait()
	s.cmd = nil
}

func (s *ownRedis) stop() {
	if s.cmd != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

func TestReadyzFollowsRedisDownAndBackWhileHealthzStaysOK(t *testing.T) {
	const password = "s3cret-pw-do-not-print"
	srvRedis := startOwnRedis(t, password)
	b, err := bus.New(bus.Config{ServiceName: "svc", RedisURL: srvRedis.url()}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	r, err := router.New(b, fastConfig(), nil)
	require.NoError(t, err)
	obs, _, srv := newObserver(t, r, observe.Config{RedisTimeout: 500 * time.Millisecond}, nil)
	require.NoError(t, r.AddHandler("h", "obs.job", func(context.Context, *message.Message) error { return nil }))
	routertest.Start(t, r)

	readyCode := func() int { code, _ := get(t, srv, observe.PathReadyz); return code }
	require.Eventually(t, func() bool { return readyCode() == http.StatusOK }, 10*time.Second, 20*time.Millisecond)
	_, h := getHealth(t, srv, observe.PathReadyz)
	assert.Positive(t, h.Checks.Redis.RTTMs)

	srvRedis.shutdown()
	require.Eventually(t, func() bool { return readyCode() == http.StatusServiceUnavailable }, 10*time.Second, 20*time.Millisecond,
		"/readyz must turn 503 once Redis is gone")
	code, body := get(t, srv, observe.PathReadyz)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	_, h = getHealth(t, srv, observe.PathReadyz)
	assert.Equal(t, observe.StatusDown, h.Status)
	assert.Equal(t, observe.StatusDown, h.Checks.Redis.Status)
	assert.NotEmpty(t, h.Checks.Redis.Error)
	t.Logf("readiness with Redis stopped: %s", body)
	assert.NotContains(t, string(body), password, "no credentials in health reports")
	code, _ = get(t, srv, observe.PathHealthz)
	assert.Equal(t, http.StatusOK, code, "Redis down is no reason to restart the service")

	// /stats still serves the in-process counters, and says why Redis is missing.
	code, body = get(t, srv, observe.PathStats)
	assert.Equal(t, http.StatusOK, code)
	assert.NotContains(t, string(body), password)
	s := getStats(t, srv)
	assert.Equal(t, observe.StatusDown, s.Redis.Status)
	assert.EqualValues(t, -1, s.DeadLetters)
	assert.False(t, s.Handlers["h"].LagKnown)
	_, err = obs.Stats(context.Background())
	require.Error(t, err)
	assert.NotContains(t, err.Error(), password)
	m := scrape(t, srv)
	up, ok := value(m, "eventbus_redis_up")
	assert.True(t, ok)
	assert.Zero(t, up)
	_, ok = value(m, "eventbus_handler_lag", "handler_name", "h")
	assert.False(t, ok, "no stale lag while Redis cannot be read")
	_, body = get(t, srv, observe.PathMetrics)
	assert.False(t, strings.Contains(string(body), password))

	srvRedis.start("redis-server")
	require.Eventually(t, func() bool { return readyCode() == http.StatusOK }, 20*time.Second, 50*time.Millisecond,
		"/readyz must turn 200 again once Redis is back")
	code, _ = get(t, srv, observe.PathHealthz)
	assert.Equal(t, http.StatusOK, code)

	// And the bus works again end to end.
	_, err = bus.Publish(context.Background(), r.Publisher(), "obs.job", job{N: 1})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		s, err := obs.Stats(context.Background())
		return err == nil && s.Handlers["h"].Acked >= 1
	}, 20*time.Second, 50*time.Millisecond)
}
