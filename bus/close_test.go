package bus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// Bus.Close closes all its subscribers (each waits up to one BlockTime for
// its blocked read) concurrently: every channel is closed when it returns,
// and no subscription is left consuming. The time is logged, not asserted.
func TestBusCloseClosesManySubscriptions(t *testing.T) {
	b, err := bus.New(bus.Config{ServiceName: "svc", Client: redistest.Client(t), StreamPrefix: redistest.Prefix(t)}, nil)
	require.NoError(t, err)
	const n = 60
	subs := make([]*bus.Subscriber, n)
	var outs []func() bool
	for i := range n {
		// Default BlockTime (250 ms): one by one, Close would take n × that.
		sub, err := b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: fmt.Sprintf("g%d", i)})
		require.NoError(t, err)
		ch, err := sub.Subscribe(context.Background(), fmt.Sprintf("close.t%d", i))
		require.NoError(t, err)
		subs[i] = sub
		outs = append(outs, func() bool {
			select {
			case _, ok := <-ch:
				return !ok
			default:
				return false
			}
		})
	}
	start := time.Now()
	require.NoError(t, b.Close())
	t.Logf("Bus.Close of %d subscriptions took %s", n, time.Since(start))
	for i := range n {
		assert.True(t, outs[i](), "subscription %d still open after Bus.Close", i)
		assert.Equal(t, 0, subs[i].Subscriptions())
	}
}
