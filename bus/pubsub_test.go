package bus_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// TestPubSub runs Watermill's universal Pub/Sub suite against the bus.
func TestPubSub(t *testing.T) {
	client := redistest.Client(t)
	prefix := redistest.Prefix(t)
	features := tests.Features{
		ConsumerGroups:                      true,
		ExactlyOnceDelivery:                 false,
		GuaranteedOrder:                     false,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		RequireSingleInstance:               false,
		NewSubscriberReceivesOldMessages:    true,
	}
	newPubSub := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		b, err := bus.New(bus.Config{
			ServiceName:  "suite",
			Client:       client,
			StreamPrefix: prefix,
			// The suite's payloads are not all JSON.
			DefaultContentType: "application/octet-stream",
		}, watermill.NopLogger{})
		require.NoError(t, err)
		sub, err := b.NewSubscriber(bus.SubscriberConfig{
			ConsumerGroup: group,
			BlockTime:     10 * time.Millisecond,
			ClaimInterval: time.Second,
			ClaimMinIdle:  3 * time.Second,
			NackDelay:     -1,
			// TestConcurrentSubscribe reads 5,000 of the events its 50
			// subscribers (each its own group) deliver, leaves the rest
			// unacked in their channels, then closes them one after the
			// other: each Close drains for CloseTimeout. 5 s made that
			// one test take 250 s.
			CloseTimeout: 500 * time.Millisecond,
		})
		require.NoError(t, err)
		return b.Publisher(), sub
	}
	tests.TestPubSub(t, features,
		func(t *testing.T) (message.Publisher, message.Subscriber) {
			return newPubSub(t, watermill.NewShortUUID())
		},
		newPubSub,
	)
}
