package router_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/router"
)

// A follow-up published inside a handler carries the handled event's
// correlation id, its id as causation id, and its trace — through whichever
// publisher the handler uses: the router's, the bus's, or a plain
// message.Publisher obtained from another Bus of the process.
func TestFollowUpThroughAnyPublisherCarriesCausationAndTrace(t *testing.T) {
	prefix := redistest.Prefix(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	b := newBus(t, prefix, func(c *bus.Config) { c.TracerProvider = tp })
	other := newBus(t, prefix) // another Bus, no TracerProvider: ids and trace still propagate
	r, err := router.New(b, routertest.FastConfig(), nil)
	require.NoError(t, err)
	pubs := map[string]message.Publisher{"router": r.Publisher(), "bus": b.Publisher(), "other": other.Publisher()}
	require.NoError(t, r.AddHandler("fanout", "order.placed", func(ctx context.Context, msg *message.Message) error {
		for name, pub := range pubs {
			m := message.NewMessage(watermill.NewUUID(), []byte(`{"via":"`+name+`"}`))
			m.SetContext(ctx)
			if err := pub.Publish("order.followup."+name, m); err != nil {
				return err
			}
		}
		return nil
	}))
	routertest.Start(t, r)

	ctx, root := tp.Tracer("test").Start(context.Background(), "checkout")
	cause := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	cause.SetContext(ctx)
	require.NoError(t, b.Publisher().Publish("order.placed", cause))
	root.End()

	for name := range pubs {
		key := b.Config().StreamKey("order.followup." + name)
		var e []redis.XMessage
		require.Eventually(t, func() bool {
			e = b.Client().XRange(context.Background(), key, "-", "+").Val()
			return len(e) == 1
		}, 10*time.Second, 10*time.Millisecond, name)
		v := e[0].Values
		assert.Equal(t, cause.UUID, v[bus.AttrCausationID], "%s: causation is the handled event", name)
		assert.Equal(t, cause.UUID, v[bus.AttrCorrelationID], "%s: correlation is the chain's first event", name)
		tid := traceIDOf(v[bus.AttrTraceParent])
		assert.Equal(t, root.SpanContext().TraceID().String(), tid, "%s: the follow-up continues the trace", name)
	}
}

// traceIDOf returns the trace id of a traceparent field value.
func traceIDOf(tp any) string {
	s, _ := tp.(string)
	if len(s) != 55 {
		return ""
	}
	return s[3:35]
}

// A compatible new schema version, stored while a router runs, is used by
// it within the bound (Config.SchemaResyncInterval): its publisher refuses
// what the new version rejects, names the new version on what it accepts,
// and the handler receives that event validated against it. An event
// naming a version the registry does not hold is dead-lettered with the
// reason.
func TestRunningRouterUsesANewSchemaVersionWithinTheBound(t *testing.T) {
	ctx := context.Background()
	const bound = 300 * time.Millisecond
	prefix := redistest.Prefix(t)
	b := newBus(t, prefix, func(c *bus.Config) { c.SchemaResyncInterval = bound })
	admin := newBus(t, prefix) // another process: the one that runs "schema put"
	_, err := admin.Schemas().Put(ctx, "order.placed", []byte(`{"type":"object","required":["orderId"]}`))
	require.NoError(t, err)
	r, err := router.New(b, routertest.FastConfig(), nil)
	require.NoError(t, err)
	got := make(chan *message.Message, 10)
	require.NoError(t, r.AddHandler("orders", "order.placed", func(ctx context.Context, msg *message.Message) error {
		got <- msg
		return nil
	}))
	routertest.Start(t, r)
	_, err = bus.Publish(ctx, r.Publisher(), "order.placed", map[string]any{"orderId": "A-1", "total": "12"})
	require.NoError(t, err, "v1 does not constrain total")
	first := <-got
	assert.Equal(t, bus.SchemaURI("order.placed", 1), first.Metadata.Get(bus.AttrDataSchema))

	// v2 constrains total to a number: the retained event has a string, so
	// the put is refused naming it...
	v2 := []byte(`{"type":"object","required":["orderId"],"properties":{"total":{"type":"number"}}}`)
	_, err = admin.Schemas().Put(ctx, "order.placed", v2)
	require.ErrorIs(t, err, bus.ErrIncompatibleSchema)
	assert.Contains(t, err.Error(), first.Metadata.Get(bus.MetaStreamID))
	// ...and once that event is gone from the stream, accepted.
	require.NoError(t, b.Client().XDel(ctx, b.Config().StreamKey("order.placed"), first.Metadata.Get(bus.MetaStreamID)).Err())
	s2, err := admin.Schemas().Put(ctx, "order.placed", v2)
	require.NoError(t, err)
	require.Equal(t, 2, s2.Version)

	time.Sleep(bound + 50*time.Millisecond) // the bound under test
	_, err = bus.Publish(ctx, r.Publisher(), "order.placed", map[string]any{"orderId": "A-2", "total": "12"})
	require.ErrorIs(t, err, bus.ErrSchemaViolation, "the running router's publisher uses v2")
	_, err = bus.Publish(ctx, r.Publisher(), "order.placed", map[string]any{"orderId": "A-3", "total": 12})
	require.NoError(t, err)
	select {
	case m := <-got:
		assert.Equal(t, s2.URI, m.Metadata.Get(bus.AttrDataSchema))
		assert.JSONEq(t, `{"orderId":"A-3","total":12}`, string(m.Payload))
	case <-time.After(10 * time.Second):
		t.Fatal("the v2 event was not handled")
	}

	// A producer that names a version nobody stored: dead-lettered, not handled.
	require.NoError(t, b.Client().XAdd(ctx, &redis.XAddArgs{Stream: b.Config().StreamKey("order.placed"), Values: []any{
		bus.AttrID, "hand-9", bus.AttrType, "order.placed", bus.AttrSource, "node", bus.AttrSpecVersion, "1.0",
		bus.AttrDataSchema, bus.SchemaURI("order.placed", 9), bus.FieldData, `{"orderId":"A-9"}`,
	}}).Err())
	require.Eventually(t, func() bool { n, _ := b.DeadLetters().Len(ctx); return n == 1 }, 10*time.Second, 10*time.Millisecond)
	d, err := b.DeadLetters().List(ctx, "-", 1)
	require.NoError(t, err)
	assert.Equal(t, "hand-9", d[0].Fields[bus.AttrID])
	assert.Contains(t, d[0].Reason, "unknown schema version")
	assert.Contains(t, d[0].Reason, "order.placed has no schema version 9")
	assert.Empty(t, got, "never handled")
}
