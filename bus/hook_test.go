package bus_test

import (
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

// OnPublish hooks see every Publish call — topic, event count, error — and
// stop once removed; hooks may be added and removed while others publish.
func TestOnPublishSeesEveryCallUntilRemoved(t *testing.T) {
	b := newTestBus(t)
	pub := b.Publisher()
	type call struct {
		topic  string
		events int
		failed bool
	}
	var mu sync.Mutex
	var calls []call
	remove := pub.OnPublish(func(topic string, events int, err error) {
		mu.Lock()
		calls = append(calls, call{topic, events, err != nil})
		mu.Unlock()
	})
	ev := func() *message.Message { return message.NewMessage(watermill.NewUUID(), []byte(`{"ok":true}`)) }

	require.NoError(t, pub.Publish("hook.a", ev()))
	require.NoError(t, pub.Publish("hook.b", ev(), ev(), ev()))
	require.ErrorIs(t, pub.Publish("Bad..Type", ev()), bus.ErrInvalidType)
	require.ErrorIs(t, pub.Publish("hook.a", message.NewMessage(watermill.NewUUID(), []byte("not json"))), bus.ErrInvalidData)
	require.NoError(t, pub.Publish("hook.a")) // no message: no call

	// Others come and go while publishing goes on.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				pub.OnPublish(func(string, int, error) {})()
			}
		})
	}
	for range 20 {
		require.NoError(t, pub.Publish("hook.c", ev()))
	}
	wg.Wait()
	remove()
	remove() // twice is harmless
	require.NoError(t, pub.Publish("hook.a", ev()))

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, calls, 4+20)
	assert.Equal(t, []call{{"hook.a", 1, false}, {"hook.b", 3, false}, {"Bad..Type", 1, true}, {"hook.a", 1, true}}, calls[:4])
	for _, c := range calls[4:] {
		assert.Equal(t, call{"hook.c", 1, false}, c)
	}
}
