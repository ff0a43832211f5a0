package middleware_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	wmmw "github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/middleware"
)

func newStore(t *testing.T, window time.Duration) *middleware.RedisHandledStore {
	t.Helper()
	s, err := middleware.NewRedisHandledStore(redistest.Client(t), redistest.Prefix(t), window)
	require.NoError(t, err)
	return s
}

func delivered(id, group string) *message.Message {
	m := event("dedup.ev", "{}")
	m.UUID = id
	m.Metadata.Set(bus.MetaGroup, group)
	m.Metadata.Set(bus.MetaTopic, "dedup.ev")
	return m
}

// A handled event delivered again is acked without running the handler; the
// mark is per consumer group and expires with the window.
func TestDedupSkipsHandledEvent(t *testing.T) {
	store := newStore(t, time.Minute)
	var runs, dups atomic.Int32
	h := middleware.Dedup{Store: store, OnDuplicate: func(*message.Message) { dups.Add(1) }}.Middleware(
		func(*message.Message) ([]*message.Message, error) { runs.Add(1); return nil, nil })
	for range 3 {
		_, err := h(delivered("e1", "svc.a"))
		require.NoError(t, err)
	}
	assert.Equal(t, int32(1), runs.Load())
	assert.Equal(t, int32(2), dups.Load())

	_, err := h(delivered("e1", "svc.b")) // another handler's group
	require.NoError(t, err)
	assert.Equal(t, int32(2), runs.Load())

	ttl, err := redistest.Client(t).PTTL(t.Context(), store.Key(middleware.HandledKey(delivered("e1", "svc.a")))).Result()
	require.NoError(t, err)
	assert.Positive(t, ttl)
	assert.LessOrEqual(t, ttl, time.Minute)
}

// A failed attempt marks nothing, so the retry runs the handler. Watermill's
// Deduplicator (check and mark before the handler) drops that retry: the
// event is never handled. This is why Dedup is our own.
func TestDedupRetriesFailedHandlerWhereWatermillDrops(t *testing.T) {
	fail := true
	var runs atomic.Int32
	handler := func(*message.Message) ([]*message.Message, error) {
		runs.Add(1)
		if fail {
			fail = false
			return nil, errors.New("transient")
		}
		return nil, nil
	}
	h := middleware.Dedup{Store: newStore(t, time.Minute)}.Middleware(handler)
	_, err := h(delivered("e2", "svc.a"))
	require.Error(t, err)
	_, err = h(delivered("e2", "svc.a"))
	require.NoError(t, err)
	assert.Equal(t, int32(2), runs.Load(), "the retry did not run the handler")

	fail = true
	runs.Store(0)
	repo, err := wmmw.NewMapExpiringKeyRepository(time.Minute)
	require.NoError(t, err)
	wm := (&wmmw.Deduplicator{Repository: repo, KeyFactory: func(m *message.Message) (string, error) { return m.UUID, nil }}).Middleware(handler)
	_, err = wm(delivered("e2", "svc.a"))
	require.Error(t, err)
	_, err = wm(delivered("e2", "svc.a"))
	require.NoError(t, err)
	assert.Equal(t, int32(1), runs.Load(), "Watermill's Deduplicator dropped the retry")
}

// With messages for the router to publish, the mark waits for the ack (after
// they are published); a nack leaves the event unmarked.
func TestDedupMarksAfterAckWhenHandlerProduces(t *testing.T) {
	store := newStore(t, time.Minute)
	h := middleware.Dedup{Store: store}.Middleware(func(*message.Message) ([]*message.Message, error) {
		return []*message.Message{message.NewMessage(watermill.NewUUID(), []byte(`{}`))}, nil
	})
	nacked := delivered("e3", "svc.a")
	out, err := h(nacked)
	require.NoError(t, err)
	require.Len(t, out, 1)
	handled, err := store.IsHandled(t.Context(), middleware.HandledKey(nacked))
	require.NoError(t, err)
	assert.False(t, handled, "marked before the ack")
	nacked.Nack()

	acked := delivered("e4", "svc.a")
	_, err = h(acked)
	require.NoError(t, err)
	acked.Ack()
	require.Eventually(t, func() bool {
		ok, err := store.IsHandled(t.Context(), middleware.HandledKey(acked))
		return err == nil && ok
	}, 5*time.Second, 5*time.Millisecond, "not marked after the ack")
	ok, err := store.IsHandled(t.Context(), middleware.HandledKey(nacked))
	require.NoError(t, err)
	assert.False(t, ok, "a nacked event was marked")
}

// End to end on real streams: a consumer handles an event and dies before
// its ack reaches Redis; another consumer of the group claims the entry.
// Without Dedup the handler runs twice; with it once, and the entry is acked.
func TestDedupCrashBetweenHandleAndAck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		dedup bool
		runs  int32
	}{{"without dedup", false, 2}, {"with dedup", true, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			client := redistest.Client(t)
			b, err := bus.New(bus.Config{ServiceName: "dd", Client: client, StreamPrefix: redistest.Prefix(t)}, nil)
			require.NoError(t, err)
			t.Cleanup(func() { _ = b.Close() })
			store, err := middleware.NewRedisHandledStore(client, b.Config().StreamPrefix, 0)
			require.NoError(t, err)
			var runs atomic.Int32
			handler := message.HandlerFunc(func(*message.Message) ([]*message.Message, error) { runs.Add(1); return nil, nil })
			if tc.dedup {
				handler = middleware.Dedup{Store: store}.Middleware(handler)
			}
			_, err = bus.Publish(t.Context(), b.Publisher(), "dedup.crash", map[string]int{"n": 1})
			require.NoError(t, err)

			cfg := bus.SubscriberConfig{ConsumerGroup: "dd.h", BlockTime: 20 * time.Millisecond, CloseTimeout: 10 * time.Millisecond,
				ClaimInterval: 50 * time.Millisecond, ClaimMinIdle: 200 * time.Millisecond}
			cfg.Consumer = "dies"
			dies, err := b.NewSubscriber(cfg)
			require.NoError(t, err)
			ch, err := dies.Subscribe(t.Context(), "dedup.crash")
			require.NoError(t, err)
			m := <-ch
			_, err = handler(m) // handled; the process dies before acking
			require.NoError(t, err)
			require.NoError(t, dies.Close())

			cfg.Consumer = "survivor"
			survivor, err := b.NewSubscriber(cfg)
			require.NoError(t, err)
			t.Cleanup(func() { _ = survivor.Close() })
			ch, err = survivor.Subscribe(t.Context(), "dedup.crash")
			require.NoError(t, err)
			select {
			case m = <-ch:
			case <-time.After(10 * time.Second):
				t.Fatal("the entry was not claimed by the survivor")
			}
			_, err = handler(m)
			require.NoError(t, err)
			m.Ack()
			assert.Equal(t, tc.runs, runs.Load(), "handler runs")
			require.Eventually(t, func() bool {
				p, err := client.XPending(t.Context(), b.Config().StreamKey("dedup.crash"), "dd.h").Result()
				return err == nil && p.Count == 0
			}, 5*time.Second, 10*time.Millisecond, "the entry is still pending")
		})
	}
}

func TestNewRedisHandledStoreValidates(t *testing.T) {
	_, err := middleware.NewRedisHandledStore(redistest.Client(t), "p:", time.Microsecond)
	require.ErrorIs(t, err, bus.ErrInvalidConfig)
	assert.Contains(t, err.Error(), "at least 1ms")
	_, err = middleware.NewRedisHandledStore(nil, "p:", 0)
	require.ErrorIs(t, err, bus.ErrInvalidConfig)
}
