package observe_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/observe"
	"github.com/shared-infra/eventbus/router"
)

// What an operator sees in a tracing backend for publish → handle → publish
// → handle, where the second handler fails its first attempt: one trace,
// spans named "publish <type>" and "process <type>", the standard messaging
// attributes, and the failed attempt marked as an error.
func TestTracesOfAPublishHandlePublishChain(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	b := newBus(t, func(c *bus.Config) { c.TracerProvider = tp })
	cfg := fastConfig()
	r, err := router.New(b, cfg, nil)
	require.NoError(t, err)
	_, _, _ = newObserver(t, r, observe.Config{}, nil)
	pub := r.Publisher()

	nextID := make(chan string, 1)
	require.NoError(t, router.Handle(r, "resize", "photo.uploaded", func(ctx context.Context, ev bus.Event[job]) error {
		id, err := bus.Publish(ctx, pub, "photo.resized", ev.Data)
		nextID <- id
		return err
	}))
	var attempts atomic.Int64
	done := make(chan struct{})
	require.NoError(t, router.Handle(r, "notify", "photo.resized", func(ctx context.Context, ev bus.Event[job]) error {
		if attempts.Add(1) == 1 {
			return errors.New("smtp timeout")
		}
		close(done)
		return nil
	}))
	routertest.Start(t, r)

	firstID, err := bus.Publish(context.Background(), pub, "photo.uploaded", job{N: 1})
	require.NoError(t, err)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the chain did not complete")
	}
	secondID := <-nextID

	// Spans end after the handler returns: wait for the last one.
	var spans tracetest.SpanStubs
	require.Eventually(t, func() bool { spans = exp.GetSpans(); return len(spans) == 5 }, 10*time.Second, 10*time.Millisecond,
		"want publish, process, publish, process (failed), process")

	byName := map[string][]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
	}
	require.Len(t, byName["publish photo.uploaded"], 1)
	require.Len(t, byName["process photo.uploaded"], 1)
	require.Len(t, byName["publish photo.resized"], 1)
	require.Len(t, byName["process photo.resized"], 2, "one span per attempt")
	pub1, proc1 := byName["publish photo.uploaded"][0], byName["process photo.uploaded"][0]
	pub2 := byName["publish photo.resized"][0]
	procs := byName["process photo.resized"]

	// One trace; each span the child of the one before it.
	traceID := pub1.SpanContext.TraceID()
	for _, s := range spans {
		assert.Equal(t, traceID, s.SpanContext.TraceID(), "%s is in the trace", s.Name)
	}
	assert.False(t, pub1.Parent.IsValid(), "the first publish starts the trace")
	assert.Equal(t, pub1.SpanContext.SpanID(), proc1.Parent.SpanID())
	assert.True(t, proc1.Parent.IsRemote(), "the consumer continues the producer's trace across Redis")
	assert.Equal(t, proc1.SpanContext.SpanID(), pub2.Parent.SpanID())
	for _, p := range procs {
		assert.Equal(t, pub2.SpanContext.SpanID(), p.Parent.SpanID(), "every attempt is a child of the publish")
	}

	// Kinds and attributes.
	assert.Equal(t, trace.SpanKindProducer, pub1.SpanKind)
	assert.Equal(t, trace.SpanKindConsumer, proc1.SpanKind)
	attrs := func(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
		m := map[attribute.Key]attribute.Value{}
		for _, kv := range s.Attributes {
			m[kv.Key] = kv.Value
		}
		return m
	}
	a := attrs(pub1)
	assert.Equal(t, "photo.uploaded", a["messaging.destination.name"].AsString())
	assert.Equal(t, firstID, a["messaging.message.id"].AsString())
	assert.Equal(t, "send", a["messaging.operation.type"].AsString())
	assert.Equal(t, "redis", a["messaging.system"].AsString())
	a = attrs(proc1)
	assert.Equal(t, "photo.uploaded", a["messaging.destination.name"].AsString())
	assert.Equal(t, firstID, a["messaging.message.id"].AsString())
	assert.Equal(t, "process", a["messaging.operation.type"].AsString())
	assert.Equal(t, "svc.resize", a["messaging.consumer.group.name"].AsString())
	assert.Equal(t, firstID, a["messaging.message.conversation_id"].AsString(), "the correlation id is the first event's id")
	assert.Equal(t, secondID, attrs(pub2)["messaging.message.id"].AsString())

	// The failed attempt is an error with the reason; the retry is not.
	var failed, retried tracetest.SpanStub
	for _, p := range procs {
		switch attrs(p)["eventbus.attempt"].AsInt64() {
		case 1:
			failed = p
		case 2:
			retried = p
		}
	}
	require.NotEmpty(t, failed.Name, "attempt 1 span")
	require.NotEmpty(t, retried.Name, "attempt 2 span")
	assert.Equal(t, codes.Error, failed.Status.Code)
	assert.Equal(t, "smtp timeout", failed.Status.Description)
	require.NotEmpty(t, failed.Events)
	assert.Equal(t, "exception", failed.Events[0].Name)
	assert.Equal(t, secondID, attrs(failed)["messaging.message.id"].AsString())
	assert.Equal(t, "svc.notify", attrs(failed)["messaging.consumer.group.name"].AsString())
	assert.Equal(t, codes.Unset, retried.Status.Code)
	assert.Equal(t, codes.Unset, proc1.Status.Code)
}
