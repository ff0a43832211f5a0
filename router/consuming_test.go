package router_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/router"
)

// Consuming follows each handler's subscription: not before Run, yes while
// running (also for a handler added at run time), gone with RemoveHandler,
// and no once the router is closed.
func TestConsumingFollowsEachHandlersSubscription(t *testing.T) {
	b := newBus(t, redistest.Prefix(t))
	r, err := router.New(b, routertest.FastConfig(), nil)
	require.NoError(t, err)
	noop := func(context.Context, *message.Message) error { return nil }
	require.NoError(t, r.AddHandler("a", "cons.a", noop))
	require.NoError(t, r.AddHandler("b", "cons.>", noop))
	assert.Equal(t, map[string]bool{"a": false, "b": false}, r.Consuming(), "before Run")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-r.Running()
	require.NoError(t, r.AddHandler("c", "cons.c", noop))
	all := map[string]bool{"a": true, "b": true, "c": true}
	require.Eventually(t, func() bool { return assert.ObjectsAreEqual(all, r.Consuming()) }, 10*time.Second, 10*time.Millisecond)

	require.NoError(t, r.RemoveHandler("b"))
	assert.Equal(t, map[string]bool{"a": true, "c": true}, r.Consuming())

	require.NoError(t, r.Close())
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	assert.Equal(t, map[string]bool{"a": false, "c": false}, r.Consuming(), "after Close")
}
