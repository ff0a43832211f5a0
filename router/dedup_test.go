package router_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/router"
)

// An event that reaches a handler twice (here written twice by a bus with
// publisher deduplication off, as a redelivery would bring it again) runs a
// WithDedup handler once, and both deliveries are acked; a handler without
// the option runs twice.
func TestWithDedupRunsHandlerOncePerEvent(t *testing.T) {
	b, err := bus.New(bus.Config{ServiceName: "svc", Client: redistest.Client(t), StreamPrefix: redistest.Prefix(t), DedupWindow: -1}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	r, err := router.New(b, routertest.FastConfig(), nil)
	require.NoError(t, err)
	once, twice := newIDSet(), newIDSet()
	require.NoError(t, router.Handle(r, "once", "photo.uploaded", func(_ context.Context, ev bus.Event[photo]) error {
		once.add(ev.ID)
		return nil
	}, router.WithDedup(time.Minute)))
	require.NoError(t, router.Handle(r, "plain", "photo.uploaded", func(_ context.Context, ev bus.Event[photo]) error {
		twice.add(ev.ID)
		return nil
	}))
	routertest.Start(t, r)
	for range 2 {
		m := message.NewMessage("same-photo-event", []byte(`{"photoId":"p1","n":1}`))
		require.NoError(t, b.Publisher().Publish("photo.uploaded", m))
	}
	require.Eventually(t, func() bool { return r.Stats()["once"].Acked == 2 && r.Stats()["plain"].Acked == 2 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, 1, once.seen["same-photo-event"])
	assert.EqualValues(t, 1, r.Stats()["once"].Duplicates)
	assert.Equal(t, 2, twice.seen["same-photo-event"])
	assert.Zero(t, r.Stats()["plain"].Duplicates)
	require.Eventually(t, func() bool {
		p, err := b.Client().XPending(context.Background(), b.Config().StreamKey("photo.uploaded"), "svc.once").Result()
		return err == nil && p.Count == 0
	}, 5*time.Second, 10*time.Millisecond, "the duplicate is acked")
}
