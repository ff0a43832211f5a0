package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

// The entries of a consumer whose heartbeat is gone are claimed at once
// (far sooner than ClaimMinIdle, here 10 minutes); those of a consumer
// whose heartbeat is there are never claimed.
func TestDeadConsumerIsClaimedLiveOneIsNot(t *testing.T) {
	b := newTestBus(t)
	c := b.Client()
	ctx := context.Background()
	const topic, group = "hb.work", "hb"
	key := b.Config().StreamKey(topic)
	require.NoError(t, c.XGroupCreateMkStream(ctx, key, group, "0").Err())
	for i := range 6 {
		require.NoError(t, b.Publisher().Publish(topic, message.NewMessage("e-"+string(rune('a'+i)), []byte(`{}`))))
	}
	// Two consumers read three entries each: "ghost" then dies (its name is
	// in the group's consumer set, its heartbeat key is gone), "slow" lives
	// (its heartbeat key is there), working on its entries for a long time.
	read := func(consumer string) []string {
		res, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: consumer, Streams: []string{key, ">"}, Count: 3}).Result()
		require.NoError(t, err)
		var ids []string
		for _, m := range res[0].Messages {
			ids = append(ids, m.Values["id"].(string))
		}
		return ids
	}
	ghost := read("ghost")
	read("slow")
	require.NoError(t, c.SAdd(ctx, b.Config().ConsumersKey(group), "ghost", "slow").Err())
	require.NoError(t, c.Set(ctx, b.Config().HeartbeatKey(group, "slow"), "1", time.Minute).Err())

	cfg := fastSub(group)
	cfg.ClaimMinIdle = 10 * time.Minute
	cfg.ClaimInterval = time.Minute
	cfg.HeartbeatTTL = 200 * time.Millisecond
	sub, err := b.NewSubscriber(cfg)
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctxT(t), topic)
	require.NoError(t, err)
	got := receive(t, ch, 3, 15*time.Second)
	var ids []string
	for _, m := range got {
		ids = append(ids, m.UUID)
		assert.Equal(t, "2", m.Metadata.Get(bus.MetaDelivery), "a claimed entry is a second delivery")
	}
	assert.ElementsMatch(t, ghost, ids, "the dead consumer's entries, and only those")

	// The live one still owns its three; the dead one left the set.
	p, err := c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: key, Group: group, Start: "-", End: "+", Count: 10, Consumer: "slow"}).Result()
	require.NoError(t, err)
	assert.Len(t, p, 3, "a live consumer's entries are never claimed")
	require.Eventually(t, func() bool {
		ok, err := c.SIsMember(ctx, b.Config().ConsumersKey(group), "ghost").Result()
		return err == nil && !ok
	}, 15*time.Second, 10*time.Millisecond, "a dead consumer with nothing pending leaves the set")
	// This subscriber keeps a heartbeat of its own.
	n, err := c.Exists(ctx, b.Config().HeartbeatKey(group, sub.Config().Consumer)).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	require.NoError(t, sub.Close())
	n, err = c.Exists(ctx, b.Config().HeartbeatKey(group, sub.Config().Consumer)).Result()
	require.NoError(t, err)
	assert.Equal(t, int64(0), n, "Close removes the heartbeat once drained")
}
