package bus_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// BenchmarkDelayedLateness schedules 10,000 events due over 5 s on 3 buses
// (movers polling every DefaultSchedulePollInterval) and reports how late
// each was received after its due time: p50 and p99, in ms. Run with
//
//	go test ./bus/ -run '^$' -bench BenchmarkDelayedLateness -benchtime 1x
func BenchmarkDelayedLateness(b *testing.B) {
	for range b.N {
		prefix := redistest.Prefix(b)
		var buses []*bus.Bus
		for range 3 {
			bb, err := bus.New(bus.Config{ServiceName: "bench", Client: redistest.Client(b), StreamPrefix: prefix}, watermill.NopLogger{})
			require.NoError(b, err)
			b.Cleanup(func() { _ = bb.Close() })
			buses = append(buses, bb)
		}
		ctx := ctxT(b)
		sub, err := buses[0].NewSubscriber(bus.SubscriberConfig{ConsumerGroup: "bench", BlockTime: 20 * time.Millisecond, Concurrency: 16})
		require.NoError(b, err)
		ch, err := sub.Subscribe(ctx, "bench.delay")
		require.NoError(b, err)
		const n = 10_000
		due := make(map[string]time.Time, n)
		start := time.Now().Add(time.Second)
		for batch := range n / 100 {
			msgs := make([]*message.Message, 100)
			for i := range msgs {
				at := start.Add(time.Duration(batch*100+i) * 5 * time.Second / n)
				m, err := bus.NewMessage(ctx, struct{}{}, bus.WithDeliverAt(at))
				require.NoError(b, err)
				msgs[i], due[m.UUID] = m, at
			}
			require.NoError(b, buses[batch%3].Publisher().Publish("bench.delay", msgs...))
		}
		late := make([]float64, 0, n)
		for m := range ch {
			late = append(late, float64(time.Since(due[m.UUID]).Microseconds())/1000)
			m.Ack()
			if len(late) == n {
				break
			}
		}
		slices.Sort(late)
		b.ReportMetric(late[n/2], "p50-late-ms")
		b.ReportMetric(late[n*99/100], "p99-late-ms")
	}
}

// cmdCounter counts the commands a client sends.
type cmdCounter struct{ n atomic.Int64 }

func (c *cmdCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *cmdCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.n.Add(1); return next(ctx, cmd) }
}
func (c *cmdCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { c.n.Add(int64(len(cmds))); return next(ctx, cmds) }
}

// BenchmarkDelayedIdleCost reports the Redis commands per second one idle
// bus's mover sends: with no schedule at all, and with one empty schedule
// (a type that once had delayed events).
//
//	go test ./bus/ -run '^$' -bench BenchmarkDelayedIdleCost -benchtime 1x
func BenchmarkDelayedIdleCost(b *testing.B) {
	for range b.N {
		opt, err := redis.ParseURL(redistest.URL())
		require.NoError(b, err)
		client := redis.NewClient(opt)
		b.Cleanup(func() { _ = client.Close() })
		counter := &cmdCounter{}
		client.AddHook(counter)
		prefix := redistest.Prefix(b)
		bb, err := bus.New(bus.Config{ServiceName: "bench", Client: client, StreamPrefix: prefix}, nil)
		require.NoError(b, err)
		b.Cleanup(func() { _ = bb.Close() })
		measure := func() float64 {
			time.Sleep(time.Second) // one poll done
			before := counter.n.Load()
			time.Sleep(5 * time.Second)
			return float64(counter.n.Load()-before) / 5
		}
		b.ReportMetric(measure(), "cmds/idle-s-no-schedule")
		require.NoError(b, redistest.Client(b).SAdd(ctxT(b), bb.Config().SchedulesKey(), bb.Config().ScheduleKey("bench.idle")).Err())
		b.ReportMetric(measure(), "cmds/idle-s-one-empty-schedule")
	}
}

// BenchmarkIdleCostNoMover is the baseline for BenchmarkDelayedIdleCost: a
// bus without a mover (SchedulePollInterval -1).
func BenchmarkIdleCostNoMover(b *testing.B) {
	for range b.N {
		opt, err := redis.ParseURL(redistest.URL())
		require.NoError(b, err)
		client := redis.NewClient(opt)
		b.Cleanup(func() { _ = client.Close() })
		counter := &cmdCounter{}
		client.AddHook(counter)
		bb, err := bus.New(bus.Config{ServiceName: "bench", Client: client, StreamPrefix: redistest.Prefix(b), SchedulePollInterval: -1}, nil)
		require.NoError(b, err)
		b.Cleanup(func() { _ = bb.Close() })
		time.Sleep(time.Second)
		before := counter.n.Load()
		time.Sleep(3 * time.Second)
		b.ReportMetric(float64(counter.n.Load()-before)/3, "cmds/idle-s")
	}
}
