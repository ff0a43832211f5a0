package middleware_test

import (
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/spantest"
	"github.com/shared-infra/eventbus/middleware"
)

// A "process" span carries the semantic conventions' messaging attributes,
// the attributes given to NewTracing (the router's server.address), the
// schema URL, and error.type when the attempt fails.
func TestTracingSpanAttributes(t *testing.T) {
	tp, rec := spantest.New(t)
	tr := middleware.NewTracing(tp, semconv.ServerAddress("redis.local"), semconv.ServerPort(6380))
	fail := errors.New("smtp timeout")
	h := tr.Middleware(func(msg *message.Message) ([]*message.Message, error) {
		if msg.Metadata.Get(middleware.MetaAttempt) == "2" {
			return nil, fail
		}
		return nil, nil
	})
	for _, attempt := range []string{"1", "2"} {
		msg := event("photo.uploaded", `{}`)
		msg.Metadata.Set(bus.MetaGroup, "svc.resize")
		msg.Metadata.Set(bus.AttrCorrelationID, "corr-1")
		msg.Metadata.Set(middleware.MetaAttempt, attempt)
		_, err := h(msg)
		assert.Equal(t, attempt == "2", errors.Is(err, fail))
	}

	spans := rec.Ended()
	require.Len(t, spans, 2)
	want := map[attribute.Key]attribute.Value{
		"messaging.system":                  attribute.StringValue("redis"),
		"messaging.operation.name":          attribute.StringValue("process"),
		"messaging.operation.type":          attribute.StringValue("process"),
		"messaging.destination.name":        attribute.StringValue("photo.uploaded"),
		"messaging.message.id":              attribute.StringValue("id-1"),
		"messaging.consumer.group.name":     attribute.StringValue("svc.resize"),
		"messaging.message.conversation_id": attribute.StringValue("corr-1"),
		"eventbus.attempt":                  attribute.IntValue(1),
		"server.address":                    attribute.StringValue("redis.local"),
		"server.port":                       attribute.IntValue(6380),
	}
	assert.Equal(t, want, spantest.Attrs(spans[0]))
	assert.Equal(t, "process photo.uploaded", spans[0].Name())
	assert.Equal(t, trace.SpanKindConsumer, spans[0].SpanKind())
	assert.Equal(t, semconv.SchemaURL, spans[0].InstrumentationScope().SchemaURL)
	assert.Equal(t, bus.InstrumentationName, spans[0].InstrumentationScope().Name)

	want["eventbus.attempt"] = attribute.IntValue(2)
	want["error.type"] = attribute.StringValue("*errors.errorString")
	assert.Equal(t, want, spantest.Attrs(spans[1]))
	assert.Equal(t, codes.Error, spans[1].Status().Code)
}
