package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Subscriptions counts the subscriptions whose channel is open: one per
// Subscribe, one less once its context ends and its channel has closed,
// none after Close.
func TestSubscriptionsCountsOpenChannels(t *testing.T) {
	b := newTestBus(t)
	sub, err := b.NewSubscriber(fastSub("open"))
	require.NoError(t, err)
	assert.Equal(t, 0, sub.Subscriptions())

	ctx1, cancel1 := context.WithCancel(context.Background())
	defer cancel1()
	ch1, err := sub.Subscribe(ctx1, "open.a")
	require.NoError(t, err)
	_, err = sub.Subscribe(context.Background(), "open.>")
	require.NoError(t, err)
	assert.Equal(t, 2, sub.Subscriptions())

	cancel1()
	select {
	case _, ok := <-ch1:
		require.False(t, ok, "no event was published")
	case <-time.After(10 * time.Second):
		t.Fatal("the channel did not close after its context ended")
	}
	assert.Equal(t, 1, sub.Subscriptions(), "counted down before the channel closes")

	require.NoError(t, sub.Close())
	assert.Equal(t, 0, sub.Subscriptions())
}
