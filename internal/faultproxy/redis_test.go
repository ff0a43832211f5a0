package faultproxy_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/internal/faultproxy"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// These tests run against the single Redis at REDIS_URL (default
// redis://127.0.0.1:6379/0), also when REDIS_CLUSTER_ADDRS is set: a proxy in
// front of one cluster node would be bypassed by MOVED redirects.

// redisViaProxy returns a direct client to the test Redis, a proxy in front of
// it, and options for a client through the proxy that neither retries nor
// ignores context deadlines, so faults show up as errors.
func redisViaProxy(t *testing.T) (direct *redis.Client, p *faultproxy.Proxy, opts *redis.Options) {
	t.Helper()
	opts, err := redis.ParseURL(redistest.URL())
	require.NoError(t, err, "REDIS_URL")
	direct = redis.NewClient(opts)
	t.Cleanup(func() { _ = direct.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if err := direct.Ping(ctx).Err(); err != nil {
		t.Fatalf("no Redis at %s: run `make test` (it starts one), or start redis-server, or set REDIS_URL: %v",
			opts.Addr, err)
	}

	p, err = faultproxy.New(opts.Addr)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, p.Close()) })

	viaProxy := *opts
	viaProxy.Addr = p.Addr()
	viaProxy.MaxRetries = -1
	viaProxy.ContextTimeoutEnabled = true
	return direct, p, &viaProxy
}

func randomHex(t *testing.T) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func TestRedisPingThroughProxy(t *testing.T) {
	_, p, opts := redisViaProxy(t)
	c := redis.NewClient(opts)
	defer c.Close()
	require.NoError(t, c.Ping(t.Context()).Err())
	assert.Equal(t, 1, p.Conns())
}

func TestRedisCutAllFailsBlockingCommand(t *testing.T) {
	direct, p, opts := redisViaProxy(t)
	name := "faultproxy-test-" + randomHex(t)
	opts.ClientName = name
	c := redis.NewClient(opts)
	defer c.Close()
	ctx := t.Context()
	key := "test:faultproxy:blpop-" + randomHex(t) // BLPOP on a missing key creates nothing

	type result struct {
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		err := c.BLPop(ctx, 5*time.Second, key).Err()
		done <- result{err, time.Now()}
	}()

	// Wait until the server sees our connection blocked in BLPOP.
	require.Eventually(t, func() bool {
		list, err := direct.ClientList(ctx).Result()
		if err != nil {
			return false
		}
		for line := range strings.SplitSeq(list, "\n") {
			if strings.Contains(line, " name="+name+" ") && strings.Contains(line, " cmd=blpop ") {
				return true
			}
		}
		return false
	}, 3*time.Second, 10*time.Millisecond, "BLPOP never reached the server")

	cutAt := time.Now()
	p.CutAll()

	select {
	case r := <-done:
		require.Error(t, r.err)
		assert.NotErrorIs(t, r.err, redis.Nil, "BLPOP timed out instead of failing")
		elapsed := r.at.Sub(cutAt)
		assert.Less(t, elapsed, time.Second, "BLPOP took %v to fail after the cut", elapsed)
	case <-time.After(4 * time.Second):
		t.Fatal("BLPOP still blocked 4 s after CutAll")
	}

	// The client reconnects through the proxy.
	require.NoError(t, c.Ping(ctx).Err())
}

func TestRedisStallTimesOutThenRecovers(t *testing.T) {
	_, p, opts := redisViaProxy(t)
	c := redis.NewClient(opts)
	defer c.Close()
	require.NoError(t, c.Ping(t.Context()).Err())

	p.SetStalled(true)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	start := time.Now()
	err := c.Ping(ctx).Err()
	cancel()
	require.Error(t, err, "PING answered through a stalled proxy")
	var ne net.Error
	assert.True(t, errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()),
		"want a timeout, got %v", err)
	assert.Less(t, time.Since(start), time.Second)

	p.SetStalled(false)
	ctx, cancel = context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	require.NoError(t, c.Ping(ctx).Err(), "PING after unstall")
}

func TestRedisRefusingThenBack(t *testing.T) {
	_, p, opts := redisViaProxy(t)
	c := redis.NewClient(opts)
	defer c.Close()
	ctx := t.Context()
	require.NoError(t, c.Ping(ctx).Err())

	// The server "goes away": current connections cut, new ones refused.
	p.SetRefusing(true)
	p.CutAll()
	require.Error(t, c.Ping(ctx).Err())
	require.Error(t, c.Ping(ctx).Err())

	p.SetRefusing(false)
	require.NoError(t, c.Ping(ctx).Err())
}
