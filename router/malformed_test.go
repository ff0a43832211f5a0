package router_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/router"
)

// An entry whose datacontenttype says JSON but whose data does not parse is
// malformed for a raw AddHandler handler too: it is dead-lettered with the
// reason and never reaches the handler; the valid entry after it does.
func TestInvalidJSONDataIsMalformedForEveryHandler(t *testing.T) {
	prefix := redistest.Prefix(t)
	b := newBus(t, prefix)
	r, err := router.New(b, routertest.FastConfig(), nil)
	require.NoError(t, err)
	var called atomic.Int64
	got := make(chan string, 4)
	require.NoError(t, r.AddHandler("raw", "json.>", func(_ context.Context, m *message.Message) error {
		called.Add(1)
		got <- m.UUID
		return nil
	}))
	routertest.Start(t, r)

	c := redistest.Client(t)
	key := b.Config().StreamKey("json.bad")
	entry := func(id, ct, data string) map[string]any {
		return map[string]any{"id": id, "type": "json.bad", "source": "raw-producer", "specversion": "1.0", "datacontenttype": ct, "data": data}
	}
	ctx := context.Background()
	for _, e := range []map[string]any{
		entry("broken", "application/json", `{"broken":`),
		entry("broken-plus", "application/cloudevents+json", `not json`),
		entry("text", "text/plain", `{"broken":`), // not JSON by its type: fine
		entry("good", "application/json", `{"ok":true}`),
	} {
		require.NoError(t, c.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: e}).Err())
	}
	require.NoError(t, c.SAdd(ctx, b.Config().RegistryKey(), "json.bad").Err())

	var ids []string
	for range 2 {
		select {
		case id := <-got:
			ids = append(ids, id)
		case <-time.After(15 * time.Second):
			t.Fatalf("handled %v, want the text and good entries", ids)
		}
	}
	assert.ElementsMatch(t, []string{"text", "good"}, ids)

	var dl []bus.DeadLetter
	require.Eventually(t, func() bool {
		dl, err = b.DeadLetters().List(ctx, "", 10)
		return err == nil && len(dl) == 2
	}, 15*time.Second, 20*time.Millisecond)
	for _, d := range dl {
		assert.Contains(t, []string{"broken", "broken-plus"}, d.Fields["id"])
		assert.Contains(t, d.Reason, "not valid JSON", "the dead letter says why")
		assert.Equal(t, "raw", d.Handler)
	}
	assert.Equal(t, int64(2), called.Load(), "the malformed entries never reached the handler")
}

// The filter comes after validation: it is asked only about valid events, a
// malformed one is dead-lettered whatever the filter would say, and a
// skipped event is acked with no failed attempt, retry or dead letter.
func TestFilterSeesOnlyValidEventsAndSkipsWithoutFailing(t *testing.T) {
	prefix := redistest.Prefix(t)
	b := newBus(t, prefix)
	r, err := router.New(b, routertest.FastConfig(), nil)
	require.NoError(t, err)
	asked := make(chan string, 8)
	var handled atomic.Int64
	require.NoError(t, r.AddHandler("picky", "json.>", func(context.Context, *message.Message) error {
		handled.Add(1)
		return nil
	}, router.WithFilter(func(m *message.Message) bool {
		asked <- m.UUID
		return m.UUID == "keep"
	})))
	routertest.Start(t, r)

	c := redistest.Client(t)
	key := b.Config().StreamKey("json.mixed")
	ctx := context.Background()
	for _, e := range []struct{ id, data string }{{"broken", `{"broken":`}, {"skip", `{}`}, {"keep", `{}`}} {
		require.NoError(t, c.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: map[string]any{
			"id": e.id, "type": "json.mixed", "source": "raw-producer", "specversion": "1.0", "datacontenttype": "application/json", "data": e.data,
		}}).Err())
	}
	require.NoError(t, c.SAdd(ctx, b.Config().RegistryKey(), "json.mixed").Err())

	require.Eventually(t, func() bool { return r.Stats()["picky"].Acked == 3 }, 15*time.Second, 10*time.Millisecond)
	close(asked)
	var ids []string
	for id := range asked {
		ids = append(ids, id)
	}
	assert.ElementsMatch(t, []string{"skip", "keep"}, ids, "the filter is not asked about the malformed entry")
	st := r.Stats()["picky"]
	assert.EqualValues(t, 1, st.Filtered)
	assert.EqualValues(t, 1, st.DeadLettered, "the malformed entry")
	assert.EqualValues(t, 1, st.Failed, "only the malformed entry failed")
	assert.Zero(t, st.Retried)
	assert.EqualValues(t, 1, handled.Load())
}
