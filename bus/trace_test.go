package bus_test

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/internal/spantest"
)

// A "publish" span carries the semantic conventions' messaging attributes,
// the batch size when a call publishes more than one event, the Redis
// server, the schema URL, and error.type when the publish fails.
func TestPublishSpanAttributes(t *testing.T) {
	tp, rec := spantest.New(t)
	client := redistest.Client(t)
	b, err := bus.New(bus.Config{ServiceName: "svc", Client: client, StreamPrefix: redistest.Prefix(t), TracerProvider: tp}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })

	one := message.NewMessage("e1", []byte(`{}`))
	require.NoError(t, b.Publisher().Publish("photo.uploaded", one))
	two := []*message.Message{message.NewMessage("e2", []byte(`{}`)), message.NewMessage("e3", []byte(`{}`))}
	require.NoError(t, b.Publisher().Publish("photo.uploaded", two...))
	bad := message.NewMessage("e4", []byte(`{`)) // not JSON under the default JSON content type
	require.Error(t, b.Publisher().Publish("photo.uploaded", bad))

	spans := rec.Ended()
	require.Len(t, spans, 4)
	want := map[attribute.Key]attribute.Value{
		"messaging.system":           attribute.StringValue("redis"),
		"messaging.operation.name":   attribute.StringValue("publish"),
		"messaging.operation.type":   attribute.StringValue("send"),
		"messaging.destination.name": attribute.StringValue("photo.uploaded"),
		"messaging.message.id":       attribute.StringValue("e1"),
	}
	for _, kv := range bus.ServerAttributes(client) {
		want[kv.Key] = kv.Value
	}
	if _, single := client.(*redis.Client); single {
		assert.Contains(t, want, semconv.ServerAddressKey, "a single-server client has a server.address")
	}
	assert.Equal(t, want, spantest.Attrs(spans[0]))
	assert.Equal(t, "publish photo.uploaded", spans[0].Name())
	assert.Equal(t, trace.SpanKindProducer, spans[0].SpanKind())
	assert.Equal(t, semconv.SchemaURL, spans[0].InstrumentationScope().SchemaURL)

	want["messaging.batch.message_count"] = attribute.IntValue(2)
	for i, id := range []string{"e2", "e3"} {
		want["messaging.message.id"] = attribute.StringValue(id)
		assert.Equal(t, want, spantest.Attrs(spans[1+i]))
	}

	delete(want, "messaging.batch.message_count")
	want["messaging.message.id"] = attribute.StringValue("e4")
	got := spantest.Attrs(spans[3])
	assert.NotEmpty(t, got["error.type"].AsString())
	delete(got, "error.type")
	assert.Equal(t, want, got)
	assert.Equal(t, codes.Error, spans[3].Status().Code)
}

func TestServerAttributes(t *testing.T) {
	for _, tc := range []struct {
		c    redis.UniversalClient
		want []attribute.KeyValue
	}{
		{redis.NewClient(&redis.Options{Addr: "10.0.0.5:6380"}), []attribute.KeyValue{semconv.ServerAddress("10.0.0.5"), semconv.ServerPort(6380)}},
		{redis.NewClient(&redis.Options{Addr: "[::1]:6379"}), []attribute.KeyValue{semconv.ServerAddress("::1"), semconv.ServerPort(6379)}},
		{redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{"127.0.0.1:1"}}), nil},
		{redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}), nil},
	} {
		assert.Equal(t, tc.want, bus.ServerAttributes(tc.c))
		_ = tc.c.Close()
	}
}
