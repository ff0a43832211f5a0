package bus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// After XGROUP DESTROY the subscription re-creates its group where it was:
// nothing it had handled is delivered again (not the whole stream from 0),
// the entry it held while the group was gone is neither lost nor repeated,
// and events published after the destroy are delivered.
func TestDestroyedGroupResumesWhereItWas(t *testing.T) {
	b := newTestBus(t)
	c := b.Client()
	ctx := context.Background()
	const topic, group = "regroup.work", "regroup"
	publish := func(from, n int) {
		for i := from; i < from+n; i++ {
			require.NoError(t, b.Publisher().Publish(topic, message.NewMessage(fmt.Sprintf("e-%03d", i), []byte(`{}`))))
		}
	}
	publish(0, 30)
	sub, err := b.NewSubscriber(fastSub(group))
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctxT(t), topic)
	require.NoError(t, err)

	seen := map[string]int{}
	next := func() *message.Message {
		select {
		case m, ok := <-ch:
			require.True(t, ok, "channel closed")
			seen[m.UUID]++
			return m
		case <-time.After(15 * time.Second):
			t.Fatalf("no message in 15 s; seen %d", len(seen))
			return nil
		}
	}
	for range 20 {
		next().Ack()
	}
	held := next() // in the handler while the group goes away
	require.Eventually(t, func() bool {
		// The 20 acks are written (nothing but the held one pending).
		p, err := c.XPending(ctx, b.Config().StreamKey(topic), group).Result()
		return err == nil && p.Count <= 11
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, c.XGroupDestroy(ctx, b.Config().StreamKey(topic), group).Err())
	publish(30, 10)
	held.Ack()
	for len(seen) < 40 {
		next().Ack()
	}
	// Anything delivered twice would come now; wait until every entry is acked.
	require.Eventually(t, func() bool {
		p, err := c.XPending(ctx, b.Config().StreamKey(topic), group).Result()
		return err == nil && p.Count == 0
	}, 10*time.Second, 10*time.Millisecond, "entries left pending in the re-created group")
	select {
	case m := <-ch:
		t.Errorf("delivered again after the group was re-created: %s", m.UUID)
	default:
	}
	for id, n := range seen {
		assert.Equal(t, 1, n, "event %s handled %d times", id, n)
	}
	assert.Len(t, seen, 40)
}
