package redistest_test

import (
	"context"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/internal/redistest"
)

// fakeTB stands in for a testing.TB so that tests can choose the name, run
// cleanups when they like and observe Fatalf. Methods it does not override go
// to the real test.
type fakeTB struct {
	testing.TB
	name string

	mu       sync.Mutex
	cleanups []func()
	fatal    string
	errs     []string
}

func newFakeTB(t *testing.T, name string) *fakeTB { return &fakeTB{TB: t, name: name} }

func (f *fakeTB) Name() string { return f.name }
func (f *fakeTB) Helper()      {}

func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

// Fatalf records the message and ends the calling goroutine, as testing does.
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fatal != "" || len(f.errs) > 0
}

// runCleanups runs the registered cleanups last-first, as testing does.
func (f *fakeTB) runCleanups() {
	f.mu.Lock()
	fns := f.cleanups
	f.cleanups = nil
	f.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// inGoroutine runs fn(f) in its own goroutine, so that Fatalf's Goexit ends
// only that goroutine, and waits for it.
func inGoroutine(f *fakeTB, fn func(testing.TB)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
}

// countKeys counts the keys matching pattern on every master.
func countKeys(ctx context.Context, t *testing.T, c redis.UniversalClient, pattern string) int {
	t.Helper()
	var n atomic.Int64
	count := func(ctx context.Context, node *redis.Client) error {
		iter := node.Scan(ctx, 0, pattern, 500).Iterator()
		for iter.Next(ctx) {
			n.Add(1)
		}
		return iter.Err()
	}
	var err error
	switch c := c.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, count)
	case *redis.Client:
		err = count(ctx, c)
	default:
		t.Fatalf("unexpected client type %T", c)
	}
	require.NoError(t, err)
	return int(n.Load())
}

func TestURL(t *testing.T) {
	t.Setenv("REDIS_URL", "")
	assert.Equal(t, "redis://127.0.0.1:6379/0", redistest.URL())
	assert.Equal(t, redistest.DefaultURL, redistest.URL())

	t.Setenv("REDIS_URL", "redis://10.1.2.3:7000/2")
	assert.Equal(t, "redis://10.1.2.3:7000/2", redistest.URL())
}

func TestIsCluster(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want bool
	}{
		{"", false},
		{" , ", false},
		{"127.0.0.1:17000", true},
		{"127.0.0.1:17000,127.0.0.1:17001", true},
	} {
		t.Setenv("REDIS_CLUSTER_ADDRS", tc.env)
		assert.Equal(t, tc.want, redistest.IsCluster(), "REDIS_CLUSTER_ADDRS=%q", tc.env)
	}
}

func TestPrefixFormat(t *testing.T) {
	re := regexp.MustCompile(`^test:[a-z0-9_-]{1,40}-[0-9a-f]{8}:$`)
	for _, tc := range []struct {
		name, want string
	}{
		{"TestFoo", "testfoo"},
		{"TestFoo/sub_case#01", "testfoo_sub_case_01"},
		{"Ünïcode *?[x]", "_n_code____x_"},
		{"With-Dash_and_UNDERSCORE", "with-dash_and_underscore"},
		{strings.Repeat("a", 60), strings.Repeat("a", 40)},
		{"", "_"},
	} {
		f := newFakeTB(t, tc.name)
		p := redistest.Prefix(f)
		assert.Regexp(t, re, p, "name %q", tc.name)
		assert.True(t, strings.HasPrefix(p, "test:"+tc.want+"-"), "name %q: prefix %q, want name part %q", tc.name, p, tc.want)
		// No cleanup run: nothing was written under these prefixes.
	}

	// Real subtests too, and every call gives a new prefix.
	t.Run("sub test/with*glob?chars[x]", func(t *testing.T) {
		a, b := redistest.Prefix(t), redistest.Prefix(t)
		assert.Regexp(t, re, a)
		assert.NotEqual(t, a, b)
	})
}

func TestClientWorks(t *testing.T) {
	c := redistest.Client(t)
	if redistest.IsCluster() {
		assert.IsType(t, &redis.ClusterClient{}, c)
	} else {
		assert.IsType(t, &redis.Client{}, c)
	}
	ctx := t.Context()
	key := redistest.Prefix(t) + "k"
	require.NoError(t, c.Set(ctx, key, "v", 0).Err())
	got, err := c.Get(ctx, key).Result()
	require.NoError(t, err)
	assert.Equal(t, "v", got)
}

func TestClientClosedAtCleanup(t *testing.T) {
	redistest.Client(t) // fails the test if there is no Redis
	f := newFakeTB(t, t.Name())
	var c redis.UniversalClient
	inGoroutine(f, func(tb testing.TB) { c = redistest.Client(tb) })
	require.Empty(t, f.fatal)
	require.NoError(t, c.Ping(t.Context()).Err())
	f.runCleanups()
	assert.ErrorIs(t, c.Ping(t.Context()).Err(), redis.ErrClosed)
}

func TestClientFailsWithHowToWhenUnreachable(t *testing.T) {
	t.Setenv("REDIS_CLUSTER_ADDRS", "")
	t.Setenv("REDIS_URL", "redis://user:s3cretpw@127.0.0.1:1/0") // nothing listens on port 1
	f := newFakeTB(t, t.Name())
	start := time.Now()
	inGoroutine(f, func(tb testing.TB) {
		redistest.Client(tb)
		t.Error("Client returned although Redis is unreachable")
	})
	f.runCleanups()
	assert.Less(t, time.Since(start), 4*time.Second, "the reachability check must be bounded")
	assert.Contains(t, f.fatal, "no Redis at redis://user:xxxxx@127.0.0.1:1/0")
	assert.Contains(t, f.fatal, "run `make test` (it starts one), or start redis-server, or set REDIS_URL")
	assert.NotContains(t, f.fatal, "s3cretpw", "the password must not be printed")
}

func TestClientFailsOnBadURL(t *testing.T) {
	t.Setenv("REDIS_CLUSTER_ADDRS", "")
	t.Setenv("REDIS_URL", "http://127.0.0.1:6379")
	f := newFakeTB(t, t.Name())
	inGoroutine(f, func(tb testing.TB) { redistest.Client(tb) })
	f.runCleanups()
	assert.Contains(t, f.fatal, "REDIS_URL=http://127.0.0.1:6379 is not a valid Redis URL")
}

func TestClientClusterUnreachable(t *testing.T) {
	t.Setenv("REDIS_CLUSTER_ADDRS", "127.0.0.1:1,127.0.0.1:2")
	f := newFakeTB(t, t.Name())
	inGoroutine(f, func(tb testing.TB) { redistest.Client(tb) })
	f.runCleanups()
	assert.Contains(t, f.fatal, "no Redis Cluster at REDIS_CLUSTER_ADDRS=127.0.0.1:1,127.0.0.1:2")
	assert.Contains(t, f.fatal, "make test-cluster")
}

func TestPrefixCleanupDeletesOnlyItsKeys(t *testing.T) {
	c := redistest.Client(t)
	ctx := t.Context()

	f := newFakeTB(t, t.Name())
	p := redistest.Prefix(f)
	other := redistest.Prefix(t) // a neighbour test's prefix: must survive
	// Shares p's text but not the trailing ':', so p+"*" does not match it.
	sibling := strings.TrimSuffix(p, ":")
	t.Cleanup(func() { c.Del(context.Background(), sibling) })

	const n = 1200 // several SCAN pages
	_, err := c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i := range n {
			pipe.Set(ctx, fmt.Sprintf("%sk:%d", p, i), i, 0)
		}
		pipe.HSet(ctx, p+"hash", "f", "v")
		pipe.RPush(ctx, p+"list", "a", "b")
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: p + "stream", Values: map[string]any{"f": "v"}})
		pipe.Set(ctx, other+"keep", "1", 0)
		pipe.Set(ctx, sibling, "1", 0)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, n+3, countKeys(ctx, t, c, p+"*"))

	f.runCleanups()

	assert.Empty(t, f.errs)
	assert.Equal(t, 0, countKeys(ctx, t, c, p+"*"), "keys under %s left behind", p)
	assert.Equal(t, int64(1), c.Exists(ctx, other+"keep").Val(), "another prefix's key was deleted")
	assert.Equal(t, int64(1), c.Exists(ctx, sibling).Val(), "a key outside the prefix was deleted")
}

func TestPrefixCleanupReportsFailure(t *testing.T) {
	t.Setenv("REDIS_CLUSTER_ADDRS", "")
	t.Setenv("REDIS_URL", "redis://127.0.0.1:1/0")
	f := newFakeTB(t, t.Name())
	p := redistest.Prefix(f)
	f.runCleanups()
	require.Len(t, f.errs, 1)
	assert.Contains(t, f.errs[0], "deleting keys "+p+"*")
}
