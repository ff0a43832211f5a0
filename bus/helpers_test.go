package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// newTestBus returns a bus on the test Redis with a key prefix of its own.
func newTestBus(t testing.TB, mutate ...func(*bus.Config)) *bus.Bus {
	t.Helper()
	cfg := bus.Config{
		ServiceName:  "test-svc",
		Client:       redistest.Client(t),
		StreamPrefix: redistest.Prefix(t),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	b, err := bus.New(cfg, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// fastSub is a subscriber config with short timings for tests.
func fastSub(group string) bus.SubscriberConfig {
	return bus.SubscriberConfig{
		ConsumerGroup:  group,
		BlockTime:      20 * time.Millisecond,
		ResyncInterval: 200 * time.Millisecond,
		CloseTimeout:   2 * time.Second,
	}
}

// receive reads n messages (acking each) or fails after timeout.
func receive(t testing.TB, ch <-chan *message.Message, n int, timeout time.Duration) []*message.Message {
	t.Helper()
	var out []*message.Message
	deadline := time.After(timeout)
	for len(out) < n {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed after %d of %d messages", len(out), n)
			}
			m.Ack()
			out = append(out, m)
		case <-deadline:
			t.Fatalf("received %d of %d messages in %s", len(out), n, timeout)
		}
	}
	return out
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}
