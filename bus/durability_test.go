package bus_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

// The test Redis (one server, or the test cluster) has no replicas, so a
// publish that asks for one is written but reported not replicated, as an
// error the caller can match and retry. The ha/ tests cover the replicated
// case (make test-ha).
func TestDurabilityWithoutReplicasIsErrNotReplicated(t *testing.T) {
	b := newTestBus(t, func(c *bus.Config) {
		c.Durability = bus.Durability{Replicas: 1, Timeout: 20 * time.Millisecond}
	})
	ctx := ctxT(t)
	sub, err := b.NewSubscriber(fastSub("durable"))
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "order.placed")
	require.NoError(t, err)

	for _, addressed := range []bool{false, true} {
		var opts []bus.Option
		if addressed {
			opts = append(opts, bus.WithRoom("r1")) // also writes the push stream: another slot in a cluster
		}
		_, err = bus.Publish(ctx, b.Publisher(), "order.placed", map[string]int{"n": 1}, opts...)
		require.ErrorIs(t, err, bus.ErrNotReplicated)
		assert.Contains(t, err.Error(), "0 of 1 replica(s) acknowledged within 20ms")
	}
	// The entries are on the primary: a subscriber gets them.
	receive(t, ch, 2, 5*time.Second)
}

func TestDurabilityZeroDoesNotWait(t *testing.T) {
	b := newTestBus(t, func(c *bus.Config) { c.Durability = bus.Durability{} })
	ctx := ctxT(t)
	for i := 0; i < 3; i++ { // the first publish registers the type, the next ones take the single-XADD path
		_, err := bus.Publish(ctx, b.Publisher(), "order.placed", map[string]int{"n": i})
		require.NoError(t, err)
	}
}
