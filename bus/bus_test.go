package bus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

type uploaded struct {
	PhotoID string `json:"photoId"`
	Size    int    `json:"size"`
}

func TestTypedRoundTripKeepsEveryAttribute(t *testing.T) {
	b := newTestBus(t)
	ctx := ctxT(t)
	sub, err := b.NewSubscriber(fastSub("roundtrip"))
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "photo.uploaded")
	require.NoError(t, err)

	msg, err := bus.NewMessage(ctx, uploaded{PhotoID: "p1", Size: 42},
		bus.WithRoom("album-7"), bus.WithUser("u1"), bus.WithBroadcast(), bus.WithSubject("p1"),
		bus.WithCorrelationID("corr-1"), bus.WithAttribute(bus.AttrCausationID, "cause-1"),
		bus.WithAttribute(bus.AttrTraceParent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
		bus.WithAttribute(bus.AttrTraceState, "vendor=1"))
	require.NoError(t, err)
	require.NoError(t, b.Publisher().Publish("photo.uploaded", msg))

	got := receive(t, ch, 1, 5*time.Second)[0]
	ev, err := bus.Decode[uploaded](got)
	require.NoError(t, err)
	assert.Equal(t, msg.UUID, ev.ID)
	assert.Equal(t, "photo.uploaded", ev.Type)
	assert.Equal(t, "test-svc", ev.Source)
	assert.WithinDuration(t, time.Now(), ev.Time, time.Minute)
	assert.Equal(t, "p1", ev.Subject)
	assert.Equal(t, "album-7", ev.Room)
	assert.Equal(t, "u1", ev.User)
	assert.True(t, ev.Broadcast)
	assert.Equal(t, "corr-1", ev.CorrelationID)
	assert.Equal(t, "cause-1", ev.CausationID)
	assert.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ev.TraceParent)
	assert.Equal(t, "vendor=1", got.Metadata.Get(bus.AttrTraceState))
	assert.Equal(t, "1.0", got.Metadata.Get(bus.AttrSpecVersion))
	assert.Equal(t, "application/json", got.Metadata.Get(bus.AttrDataContentType))
	assert.Equal(t, uploaded{PhotoID: "p1", Size: 42}, ev.Data)
	assert.Equal(t, "1", got.Metadata.Get(bus.MetaDelivery))
	assert.NotEmpty(t, got.Metadata.Get(bus.MetaStreamID))

	// The stream holds plain fields that redis-cli shows as they are.
	entries, err := b.Client().XRange(ctx, b.Config().StreamKey("photo.uploaded"), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, msg.UUID, entries[0].Values["id"])
	assert.Equal(t, `{"photoId":"p1","size":42}`, entries[0].Values["data"])
	assert.Equal(t, "album-7", entries[0].Values["room"])
	for k := range entries[0].Values {
		assert.False(t, strings.HasPrefix(k, "_eventbus_"), "internal key %s written", k)
	}
	// An addressed event is also on the push stream, for the gateway.
	push, err := b.Client().XRange(ctx, b.Config().PushKey(), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, push, 1)
	assert.Equal(t, entries[0].Values, push[0].Values)

	// An event addressed to nobody is not.
	_, err = bus.Publish(ctx, b.Publisher(), "photo.uploaded", uploaded{PhotoID: "p2"})
	require.NoError(t, err)
	n, err := b.Client().XLen(ctx, b.Config().PushKey()).Result()
	require.NoError(t, err)
	assert.EqualValues(t, 1, n)
}

func TestDecodeErrorIsReportedAsSuch(t *testing.T) {
	msg := message.NewMessage("id-1", []byte(`{"photoId": 5}`))
	msg.Metadata.Set(bus.AttrType, "photo.uploaded")
	_, err := bus.Decode[uploaded](msg)
	require.ErrorIs(t, err, bus.ErrDecode)
	assert.Contains(t, err.Error(), "id-1")
}

func TestRejectedPublishWritesNothing(t *testing.T) {
	b := newTestBus(t, func(c *bus.Config) { c.MaxEventSize = 1024 })
	ctx := ctxT(t)
	good := func() *message.Message { return message.NewMessage(watermill.NewUUID(), []byte(`{"ok":true}`)) }
	cases := []struct {
		name  string
		topic string
		msgs  []*message.Message
		is    error
		says  string
	}{
		{"bad type", "Photo..Uploaded", []*message.Message{good()}, bus.ErrInvalidType, "upper case"},
		{"empty token", "photo..uploaded", []*message.Message{good()}, bus.ErrInvalidType, "empty token"},
		{"wildcard type", "photo.*", []*message.Message{good()}, bus.ErrInvalidType, "wildcard"},
		{"oversize", "photo.uploaded", []*message.Message{message.NewMessage(watermill.NewUUID(), []byte(`"`+strings.Repeat("x", 2000)+`"`))}, bus.ErrEventTooLarge, "exceeds the limit of 1024 bytes"},
		{"invalid json", "photo.uploaded", []*message.Message{message.NewMessage(watermill.NewUUID(), []byte(`{"photoId":`))}, bus.ErrInvalidData, "not valid JSON"},
		{"one bad in a batch", "photo.uploaded", []*message.Message{good(), good(), message.NewMessage(watermill.NewUUID(), []byte(`nope`))}, bus.ErrInvalidData, "event 3 of 3"},
		{"type mismatch", "photo.uploaded", []*message.Message{func() *message.Message {
			m := good()
			m.Metadata.Set(bus.AttrType, "photo.deleted")
			return m
		}()}, bus.ErrInvalidAttribute, "does not match the topic"},
		{"reserved key", "photo.uploaded", []*message.Message{func() *message.Message {
			m := good()
			m.Metadata.Set("data", "x")
			return m
		}()}, bus.ErrInvalidAttribute, "reserved"},
		{"bad time", "photo.uploaded", []*message.Message{func() *message.Message {
			m := good()
			m.Metadata.Set(bus.AttrTime, "yesterday")
			return m
		}()}, bus.ErrInvalidAttribute, "RFC 3339"},
		{"empty user", "photo.uploaded", []*message.Message{optMsg(t, bus.WithUser(""))}, bus.ErrInvalidAttribute, "user is empty"},
		{"empty room", "photo.uploaded", []*message.Message{optMsg(t, bus.WithRoom(""))}, bus.ErrInvalidAttribute, "room is empty"},
		{"empty subject", "photo.uploaded", []*message.Message{optMsg(t, bus.WithSubject(""))}, bus.ErrInvalidAttribute, "subject is empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := b.Publisher().Publish(c.topic, c.msgs...)
			require.Error(t, err)
			assert.ErrorIs(t, err, c.is)
			assert.Contains(t, err.Error(), c.says)
		})
	}
	// One key per command, so that the check also holds on a cluster.
	for _, k := range []string{b.Config().StreamKey("photo.uploaded"), b.Config().RegistryKey(), b.Config().PushKey()} {
		n, err := b.Client().Exists(ctx, k).Result()
		require.NoError(t, err)
		assert.Zero(t, n, "a rejected publish must write nothing (%s)", k)
	}
}

// optMsg builds a valid event with opts applied.
func optMsg(t *testing.T, opts ...bus.Option) *message.Message {
	t.Helper()
	m, err := bus.NewMessage(context.Background(), map[string]bool{"ok": true}, opts...)
	require.NoError(t, err)
	return m
}

func TestGarbageEntryDoesNotStopConsumption(t *testing.T) {
	b := newTestBus(t)
	ctx := ctxT(t)
	key := b.Config().StreamKey("photo.uploaded")
	sub, err := b.NewSubscriber(fastSub("garbage"))
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "photo.uploaded")
	require.NoError(t, err)

	require.NoError(t, b.Client().XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"garbage", "1"}}).Err())
	var ids []string
	for i := range 5 {
		id, err := bus.Publish(ctx, b.Publisher(), "photo.uploaded", uploaded{PhotoID: "p", Size: i})
		require.NoError(t, err)
		ids = append(ids, id)
	}
	got := receive(t, ch, 6, 5*time.Second)
	reason, bad := bus.IsMalformed(got[0])
	assert.True(t, bad)
	assert.Contains(t, reason, "missing required attribute")
	assert.Equal(t, "photo.uploaded", got[0].Metadata.Get(bus.MetaTopic))
	assert.JSONEq(t, `{"garbage":"1"}`, string(got[0].Payload), "the raw entry is kept")
	for i, m := range got[1:] {
		_, bad := bus.IsMalformed(m)
		assert.False(t, bad)
		assert.Equal(t, ids[i], m.UUID)
	}
	// Everything was acked.
	require.Eventually(t, func() bool {
		p, err := b.Client().XPending(ctx, key, "garbage").Result()
		return err == nil && p.Count == 0
	}, 5*time.Second, 20*time.Millisecond)
}

func TestHandMadeEntryIsConsumed(t *testing.T) {
	b := newTestBus(t)
	ctx := ctxT(t)
	key := b.Config().StreamKey("photo.uploaded")
	sub, err := b.NewSubscriber(fastSub("handmade"))
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "photo.uploaded")
	require.NoError(t, err)
	// Exactly what docs/wire-format.md tells a Node or Python service to send.
	require.NoError(t, b.Client().XAdd(ctx, &redis.XAddArgs{Stream: key, MaxLen: 100000, Approx: true, Values: []any{
		"id", "8f14e45f-ceea-467f-a0e6-3b1f0c9a1e2d", "type", "photo.uploaded", "source", "node-uploader",
		"specversion", "1.0", "time", "2026-11-27T10:00:00.123456789Z", "datacontenttype", "application/json",
		"subject", "p-42", "data", `{"photoId":"p-42","size":1024}`,
	}}).Err())
	got := receive(t, ch, 1, 5*time.Second)[0]
	ev, err := bus.Decode[uploaded](got)
	require.NoError(t, err)
	assert.Equal(t, "8f14e45f-ceea-467f-a0e6-3b1f0c9a1e2d", ev.ID)
	assert.Equal(t, "node-uploader", ev.Source)
	assert.Equal(t, "p-42", ev.Subject)
	assert.Equal(t, time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC), ev.Time)
	assert.Equal(t, uploaded{PhotoID: "p-42", Size: 1024}, ev.Data)
}

func TestCompatibilityWithWatermillRedisstream(t *testing.T) {
	b := newTestBus(t)
	ctx := ctxT(t)
	client := b.Client()

	t.Run("bus consumes what a plain redisstream publisher writes", func(t *testing.T) {
		for name, m := range map[string]redisstream.Marshaller{
			"default": redisstream.DefaultMarshallerUnmarshaller{},
			"bus":     bus.Marshaller{},
		} {
			typ := "legacy." + name
			pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client, Marshaller: m}, nil)
			require.NoError(t, err)
			sub, err := b.NewSubscriber(fastSub("compat"))
			require.NoError(t, err)
			ch, err := sub.Subscribe(ctx, typ)
			require.NoError(t, err)
			msg := message.NewMessage(watermill.NewUUID(), []byte(`{"a":1}`))
			msg.Metadata.Set("custom", "v")
			if _, ok := m.(bus.Marshaller); ok {
				for k, v := range map[string]string{"type": typ, "source": "legacy", "specversion": "1.0"} {
					msg.Metadata.Set(k, v)
				}
			}
			require.NoError(t, pub.Publish(b.Config().StreamKey(typ), msg))
			got := receive(t, ch, 1, 5*time.Second)[0]
			_, bad := bus.IsMalformed(got)
			assert.False(t, bad, typ)
			assert.Equal(t, msg.UUID, got.UUID)
			assert.Equal(t, "v", got.Metadata.Get("custom"))
			assert.Equal(t, `{"a":1}`, string(got.Payload))
			require.NoError(t, sub.Close())
		}
	})

	t.Run("a plain redisstream subscriber with the bus unmarshaller consumes what the bus publishes", func(t *testing.T) {
		// Its Close closes the client it is given: hand it one of its own.
		var own redis.UniversalClient
		switch c := client.(type) {
		case *redis.ClusterClient:
			own = redis.NewClusterClient(c.Options())
		case *redis.Client:
			own = redis.NewClient(c.Options())
		default:
			t.Fatalf("unexpected client type %T", client)
		}
		rs, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
			Client: own, Unmarshaller: bus.Marshaller{}, ConsumerGroup: "plain", BlockTime: 10 * time.Millisecond,
		}, nil)
		require.NoError(t, err)
		defer rs.Close()
		ch, err := rs.Subscribe(ctx, b.Config().StreamKey("photo.compat"))
		require.NoError(t, err)
		id, err := bus.Publish(ctx, b.Publisher(), "photo.compat", uploaded{PhotoID: "x"}, bus.WithUser("u9"))
		require.NoError(t, err)
		got := receive(t, ch, 1, 5*time.Second)[0]
		assert.Equal(t, id, got.UUID)
		assert.Equal(t, "u9", got.Metadata.Get(bus.AttrUser))
		assert.Equal(t, "photo.compat", got.Metadata.Get(bus.AttrType))
	})
}

func TestNackIsRedeliveredAndCountedInRedis(t *testing.T) {
	b := newTestBus(t)
	ctx := ctxT(t)
	cfg := fastSub("nack")
	cfg.NackDelay = time.Millisecond
	sub, err := b.NewSubscriber(cfg)
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, "photo.nack")
	require.NoError(t, err)
	id, err := bus.Publish(ctx, b.Publisher(), "photo.nack", uploaded{PhotoID: "n"})
	require.NoError(t, err)
	for want := 1; want <= 3; want++ {
		select {
		case m := <-ch:
			assert.Equal(t, id, m.UUID)
			assert.Equal(t, want, atoi(m.Metadata.Get(bus.MetaDelivery)))
			if want < 3 {
				m.Nack()
			} else {
				m.Ack()
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("delivery %d did not come", want)
		}
	}
	// Redis's own counter agrees (it survives restarts, an in-memory one does not).
	require.Eventually(t, func() bool {
		p, err := b.Client().XPending(ctx, b.Config().StreamKey("photo.nack"), "nack").Result()
		return err == nil && p.Count == 0
	}, 5*time.Second, 10*time.Millisecond)
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func TestCloseTwiceAndCallerClientStaysOpen(t *testing.T) {
	b := newTestBus(t)
	sub, err := b.NewSubscriber(fastSub("close"))
	require.NoError(t, err)
	_, err = sub.Subscribe(ctxT(t), "photo.close")
	require.NoError(t, err)
	require.NoError(t, sub.Close())
	require.NoError(t, sub.Close())
	require.NoError(t, b.Close())
	require.NoError(t, b.Close())
	assert.NoError(t, b.Client().Ping(context.Background()).Err(), "the caller's client must stay open")
	assert.ErrorIs(t, b.Publisher().Publish("photo.close", message.NewMessage("x", nil)), bus.ErrClosed)
	_, err = sub.Subscribe(context.Background(), "photo.close")
	assert.ErrorIs(t, err, bus.ErrClosed)
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	_, err := bus.New(bus.Config{MaxEventSize: -5, RedisURL: "redis://:s3cret@[::1", Retention: bus.Retention{MaxAge: -1}}, nil)
	require.ErrorIs(t, err, bus.ErrInvalidConfig)
	for _, want := range []string{"ServiceName is required", "MaxEventSize -5", "RedisURL", "MaxAge"} {
		assert.Contains(t, err.Error(), want)
	}
	assert.NotContains(t, err.Error(), "s3cret", "credentials never appear in errors")
}
