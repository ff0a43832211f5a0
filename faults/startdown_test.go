//go:build faults

package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/router"
)

// TestRedisDownAtStart starts each kind of consumer while its Redis (a
// redis-server of the test's own) is not running, then starts Redis and
// publishes. The consumer must neither fail nor exit, must not count as
// consuming before Redis answers, and must handle every event. Recovery =
// Redis answering PING → first event handled (consumer defaults).
func TestRedisDownAtStart(t *testing.T) {
	kinds := []struct {
		name  string
		start func(t *testing.T, b *bus.Bus, tr *tracker) (consuming func() bool)
	}{
		{"bus subscriber, one type", func(t *testing.T, b *bus.Bus, tr *tracker) func() bool {
			sub, ch := subscribe(t, b, bus.SubscriberConfig{ConsumerGroup: "down", CloseTimeout: 2 * time.Second}, "fault.down")
			go consume(ch, tr, 0)
			return func() bool { return sub.Subscriptions() > 0 }
		}},
		{"bus subscriber, pattern fault.>", func(t *testing.T, b *bus.Bus, tr *tracker) func() bool {
			sub, ch := subscribe(t, b, bus.SubscriberConfig{ConsumerGroup: "down", CloseTimeout: 2 * time.Second}, "fault.>")
			go consume(ch, tr, 0)
			return func() bool { return sub.Subscriptions() > 0 }
		}},
		{"router handler (as the photo handler sets run)", func(t *testing.T, b *bus.Bus, tr *tracker) func() bool {
			r, err := router.New(b, router.Config{}, nil)
			require.NoError(t, err)
			require.NoError(t, r.AddHandler("down", "fault.down", func(_ context.Context, m *message.Message) error {
				tr.handle(m.UUID, m.Metadata.Get(bus.MetaStreamID))
				return nil
			}))
			routertest.Start(t, r)
			return func() bool { return r.Consuming()["down"] }
		}},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			x := newRow(t, "Redis down at start: "+k.name)
			port := freePort(t)
			client := redis.NewClient(faultClientOptions(fmt.Sprintf("127.0.0.1:%d", port)))
			t.Cleanup(func() { _ = client.Close() })
			b, _, tr := setup(t, client, "faults:down:", "fault.down", nil)
			consuming := k.start(t, b, tr)
			time.Sleep(time.Second) // the consumer tries Redis and backs off meanwhile
			assert.False(t, consuming(), "consuming while Redis is down")

			startRedisServer(t, t.TempDir(), port)
			upAt := time.Now()
			const n = 50
			for i := range n {
				m := message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"n":%d}`, i))
				tr.published(m.UUID, b.Publisher().Publish("fault.down", m))
			}
			missing := tr.waitAllHandled(20 * time.Second)
			lost := tr.fill(x)
			assert.Empty(t, missing, "events never handled")
			assert.True(t, consuming(), "not consuming once Redis answers")
			recovery := tr.firstHandledAfter(upAt)
			x.Recovery = fmtDur(recovery)
			x.Notes = "consumer started 1 s before redis-server; recovery = Redis answers PING → first event handled; default subscriber timings"
			if len(lost) > 0 {
				t.Logf("lost: %v", lost[:min(10, len(lost))])
			}
		})
	}
}
