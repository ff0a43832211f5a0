package bus_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/delay"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// busOn returns a bus on prefix with a fast mover (or none, poll -1).
func busOn(t *testing.T, prefix string, poll time.Duration) *bus.Bus {
	t.Helper()
	b, err := bus.New(bus.Config{ServiceName: "svc", Client: redistest.Client(t), StreamPrefix: prefix, SchedulePollInterval: poll}, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestDelayedEventsMovedExactlyOnceByThreeBusesAndNeverEarly(t *testing.T) {
	prefix := redistest.Prefix(t)
	buses := []*bus.Bus{busOn(t, prefix, 10*time.Millisecond), busOn(t, prefix, 10*time.Millisecond), busOn(t, prefix, 10*time.Millisecond)}
	ctx := ctxT(t)
	const n = 2000
	const traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	due := make(map[string]int64, n) // event id -> due Unix ms
	start := time.Now()
	for batch := 0; batch < n/100; batch++ {
		msgs := make([]*message.Message, 100)
		for i := range msgs {
			at := start.Add(200*time.Millisecond + time.Duration((batch*100+i)%1500)*time.Millisecond)
			m, err := bus.NewMessage(ctx, map[string]int{"i": batch*100 + i}, bus.WithDeliverAt(at), bus.WithCorrelationID("corr-1"))
			require.NoError(t, err)
			m.Metadata.Set(bus.AttrTraceParent, traceParent)
			msgs[i] = m
			due[m.UUID] = at.UnixMilli()
		}
		require.NoError(t, buses[batch%3].Publisher().Publish("delay.many", msgs...))
	}

	sub, err := buses[0].NewSubscriber(fastSub("svc.h"))
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "delay.many")
	require.NoError(t, err)
	got := receive(t, ch, n, 60*time.Second)
	seen := map[string]bool{}
	for _, m := range got {
		require.False(t, seen[m.UUID], "event %s delivered twice", m.UUID)
		seen[m.UUID] = true
		d, ok := due[m.UUID]
		require.True(t, ok, "unknown event %s", m.UUID)
		// The stream id is the Redis server's clock at XADD: never before due.
		assert.GreaterOrEqual(t, streamMS(t, m.Metadata.Get(bus.MetaStreamID)), d, "event %s written early", m.UUID)
		assert.Equal(t, "corr-1", m.Metadata.Get(bus.AttrCorrelationID))
		assert.Equal(t, traceParent, m.Metadata.Get(bus.AttrTraceParent), "the trace context is kept")
	}
	// Moved once each: the stream holds exactly n entries and nothing is left.
	l, err := buses[0].Client().XLen(ctx, buses[0].Config().StreamKey("delay.many")).Result()
	require.NoError(t, err)
	assert.EqualValues(t, n, l)
	left, err := buses[0].ListScheduled(ctx, "", 0)
	require.NoError(t, err)
	assert.Empty(t, left)
}

func TestDelayedEventsSurviveTheirBusClosing(t *testing.T) {
	prefix := redistest.Prefix(t)
	ctx := ctxT(t)
	a := busOn(t, prefix, -1) // holds no mover: as if it were killed before they were due
	var ids []string
	for i := range 50 {
		id, err := bus.Publish(ctx, a.Publisher(), "delay.kill", map[string]int{"i": i}, bus.WithDelay(50*time.Millisecond))
		require.NoError(t, err)
		ids = append(ids, id)
	}
	require.NoError(t, a.Close())
	l, err := redistest.Client(t).XLen(ctx, prefix+"delay.kill").Result()
	require.NoError(t, err)
	require.Zero(t, l, "nothing written before a mover runs")

	b := busOn(t, prefix, 10*time.Millisecond) // another instance, or the restart
	sub, err := b.NewSubscriber(fastSub("svc.h"))
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "delay.kill")
	require.NoError(t, err)
	got := receive(t, ch, 50, 20*time.Second)
	var gotIDs []string
	for _, m := range got {
		gotIDs = append(gotIDs, m.UUID)
	}
	assert.ElementsMatch(t, ids, gotIDs, "the same ids, none lost")
}

func TestDelayedEventsSurviveTheirBusClosingWhileMoving(t *testing.T) {
	prefix := redistest.Prefix(t)
	ctx := ctxT(t)
	a := busOn(t, prefix, 5*time.Millisecond)
	const n = 1000
	at := time.Now().Add(100 * time.Millisecond)
	msgs := make([]*message.Message, n)
	ids := make([]string, n)
	for i := range msgs {
		m, err := bus.NewMessage(ctx, map[string]int{"i": i}, bus.WithDeliverAt(at))
		require.NoError(t, err)
		msgs[i], ids[i] = m, m.UUID
	}
	require.NoError(t, a.Publisher().Publish("delay.race", msgs...))
	// Close a as its mover starts on the due events: whatever it had not
	// moved stays scheduled for the next mover.
	for time.Now().Before(at) {
		time.Sleep(time.Millisecond)
	}
	require.NoError(t, a.Close())

	b := busOn(t, prefix, 10*time.Millisecond)
	sub, err := b.NewSubscriber(fastSub("svc.h"))
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "delay.race")
	require.NoError(t, err)
	got := receive(t, ch, n, 30*time.Second)
	var gotIDs []string
	for _, m := range got {
		gotIDs = append(gotIDs, m.UUID)
	}
	assert.ElementsMatch(t, ids, gotIDs)
	l, err := b.Client().XLen(ctx, prefix+"delay.race").Result()
	require.NoError(t, err)
	assert.EqualValues(t, n, l, "none moved twice")
}

func TestDelayedPublishRetriedAfterAFailureStaysDelayed(t *testing.T) {
	prefix := redistest.Prefix(t)
	b := busOn(t, prefix, -1)
	m := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	delay.Message(m, delay.For(time.Hour))
	m.Metadata.Set(bus.AttrBroadcast, "maybe") // invalid: the publish fails
	require.ErrorIs(t, b.Publisher().Publish("delay.retry", m), bus.ErrInvalidAttribute)
	m.Metadata.Set(bus.AttrBroadcast, "true")
	require.NoError(t, b.Publisher().Publish("delay.retry", m))
	l, err := b.Client().XLen(ctxT(t), prefix+"delay.retry").Result()
	require.NoError(t, err)
	assert.Zero(t, l, "still delayed after the failed attempt")
	list, err := b.ListScheduled(ctxT(t), "delay.retry", 0)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.WithinDuration(t, time.Now().Add(time.Hour), list[0].Due, 5*time.Second)
}

func TestDelayOptionsWatermillMetadataHorizonCancel(t *testing.T) {
	prefix := redistest.Prefix(t)
	ctx := ctxT(t)
	b := busOn(t, prefix, -1)

	// A time in the past delivers now.
	_, err := bus.Publish(ctx, b.Publisher(), "delay.opts", map[string]int{}, bus.WithDeliverAt(time.Now().Add(-time.Hour)))
	require.NoError(t, err)
	l, err := b.Client().XLen(ctx, prefix+"delay.opts").Result()
	require.NoError(t, err)
	assert.EqualValues(t, 1, l)

	// Beyond the horizon is refused, nothing written.
	_, err = bus.Publish(ctx, b.Publisher(), "delay.opts", map[string]int{}, bus.WithDelay(91*24*time.Hour))
	require.ErrorIs(t, err, bus.ErrDelayTooLong)

	// Watermill's components/delay metadata schedules too, and is not written.
	m := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	delay.Message(m, delay.For(time.Hour))
	require.NoError(t, b.Publisher().Publish("delay.opts", m))
	id2, err := bus.Publish(ctx, b.Publisher(), "delay.other", map[string]int{"x": 1}, bus.WithDelay(time.Hour), bus.WithRoom("r1"))
	require.NoError(t, err)

	list, err := b.ListScheduled(ctx, "", 0)
	require.NoError(t, err)
	require.Len(t, list, 2)
	byID := map[string]bus.ScheduledEvent{}
	for _, e := range list {
		byID[e.ID] = e
	}
	require.Contains(t, byID, m.UUID)
	assert.Equal(t, "delay.opts", byID[m.UUID].Type)
	assert.WithinDuration(t, time.Now().Add(time.Hour), byID[m.UUID].Due, 5*time.Second)
	require.NotNil(t, byID[m.UUID].Message)
	assert.Empty(t, byID[m.UUID].Message.Metadata.Get(delay.DelayedUntilKey))
	assert.Equal(t, "r1", byID[id2].Message.Metadata.Get(bus.AttrRoom))

	require.NoError(t, b.CancelScheduled(ctx, "", m.UUID))
	require.ErrorIs(t, b.CancelScheduled(ctx, "delay.opts", m.UUID), bus.ErrNotScheduled)

	// Make the addressed one due and move it: its browser copy follows.
	require.NoError(t, b.Client().ZAdd(ctx, b.Config().ScheduleKey("delay.other"), redis.Z{Score: 1, Member: id2}).Err())
	moved, err := b.MoveDue(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, moved)
	push, err := b.Client().XRange(ctx, b.Config().PushKey(), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, push, 1)
	assert.Equal(t, id2, push[0].Values[bus.AttrID])
	types, err := b.Client().SMembers(ctx, b.Config().RegistryKey()).Result()
	require.NoError(t, err)
	assert.Contains(t, types, "delay.other")
}
