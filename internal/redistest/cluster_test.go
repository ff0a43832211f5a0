//go:build cluster

// Cluster tests run only with -tags cluster, against a Redis Cluster named by
// REDIS_CLUSTER_ADDRS: `make test-cluster`, or
//
//	scripts/with-redis-cluster.sh go test -race -tags cluster ./internal/redistest/
//
// With the tag but without the variable they fail rather than skip.

package redistest_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/internal/redistest"
)

func TestClusterPrefixCleanupOnEveryMaster(t *testing.T) {
	if !redistest.IsCluster() {
		t.Fatal("REDIS_CLUSTER_ADDRS is not set: run `make test-cluster`, or " +
			"scripts/with-redis-cluster.sh go test -tags cluster ./internal/redistest/")
	}
	uc := redistest.Client(t)
	c, ok := uc.(*redis.ClusterClient)
	require.True(t, ok, "Client returned %T, want *redis.ClusterClient", uc)
	ctx := t.Context()

	info, err := c.ClusterInfo(ctx).Result()
	require.NoError(t, err)
	require.Contains(t, info, "cluster_state:ok")

	f := newFakeTB(t, t.Name())
	p := redistest.Prefix(f)
	const n = 600
	_, err = c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i := range n {
			pipe.Set(ctx, fmt.Sprintf("%sk:%d", p, i), i, 0)
		}
		return nil
	})
	require.NoError(t, err)

	// The keys are spread over every master, so cleanup must visit them all.
	perMaster := keysPerMaster(ctx, t, c, p+"*")
	require.GreaterOrEqual(t, len(perMaster), 3, "want 3 masters, got %v", perMaster)
	total := 0
	for addr, k := range perMaster {
		assert.Positive(t, k, "no keys on master %s", addr)
		total += k
	}
	require.Equal(t, n, total)

	f.runCleanups()

	assert.Empty(t, f.errs)
	for addr, k := range keysPerMaster(ctx, t, c, p+"*") {
		assert.Zero(t, k, "keys left on master %s", addr)
	}
}

func keysPerMaster(ctx context.Context, t *testing.T, c *redis.ClusterClient, pattern string) map[string]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	err := c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		n := 0
		iter := node.Scan(ctx, 0, pattern, 500).Iterator()
		for iter.Next(ctx) {
			n++
		}
		mu.Lock()
		counts[node.Options().Addr] = n
		mu.Unlock()
		return iter.Err()
	})
	require.NoError(t, err)
	return counts
}
