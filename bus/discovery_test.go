package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

// A stream written by a plain XADD (no registry SADD, as a non-Go producer
// may do) is found by the bus's discovery sweep, and a pattern subscription
// receives its events.
func TestDiscoveryFindsRawXAddStreams(t *testing.T) {
	b := newTestBus(t, func(c *bus.Config) {
		c.DiscoveryInterval = 100 * time.Millisecond
		c.Retention.TrimInterval = -1
	})
	ctx := ctxT(t)
	sc := fastSub("disc")
	sc.ResyncInterval = time.Hour // only the sweep's announcement can find it
	s, err := b.NewSubscriber(sc)
	require.NoError(t, err)
	ch, err := s.Subscribe(ctx, "raw.>")
	require.NoError(t, err)

	id := watermill.NewUUID()
	key := b.Config().StreamKey("raw.by.hand")
	require.NoError(t, b.Client().XAdd(ctx, &redis.XAddArgs{Stream: key, Values: rawEvent(id, "raw.by.hand")}).Err())
	// Not a stream, and not a valid type: never registered.
	require.NoError(t, b.Client().Set(ctx, b.Config().StreamKey("raw.string"), "x", 0).Err())
	require.NoError(t, b.Client().XAdd(ctx, &redis.XAddArgs{Stream: b.Config().StreamPrefix + "Bad..Type", Values: []any{"a", 1}}).Err())

	got := receive(t, ch, 1, 15*time.Second)
	assert.Equal(t, id, got[0].UUID)
	types, err := b.Client().SMembers(ctx, b.Config().RegistryKey()).Result()
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"raw.by.hand"}, types)
}

// After Redis lost the registry (say a restart without persistence), the
// bus repairs it by itself: every stream under the prefix is registered again.
func TestDiscoveryRepairsLostRegistry(t *testing.T) {
	b := newTestBus(t, func(c *bus.Config) {
		c.DiscoveryInterval = -1
		c.Retention.TrimInterval = -1
	})
	ctx := context.Background()
	publishN(t, b.Publisher(), "reg.a", 1)
	publishN(t, b.Publisher(), "reg.b.c", 1)
	require.NoError(t, b.Client().Del(ctx, b.Config().RegistryKey()).Err())

	added, err := b.Discover(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"reg.a", "reg.b.c"}, added)
	types, err := b.Client().SMembers(ctx, b.Config().RegistryKey()).Result()
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"reg.a", "reg.b.c"}, types)

	added, err = b.Discover(ctx)
	require.NoError(t, err)
	assert.Empty(t, added, "nothing missing any more")
}
