// Package typescript_test runs the TypeScript client (clients/typescript,
// built by `make ts-build`) against the Go bus on a real Redis, both ways.
package typescript_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/router"
)

const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func node(t *testing.T, script string, env ...string) string {
	t.Helper()
	if _, err := os.Stat("dist/esm/index.js"); err != nil {
		t.Fatalf("the TypeScript client is not built: run `make ts-build` (npm ci && npm run build in clients/typescript): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Env = append(os.Environ(), append([]string{"REDIS_URL=" + redistest.URL()}, env...)...)
	out, err := cmd.Output()
	var stderr string
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = string(ee.Stderr)
	}
	require.NoError(t, err, "node %s: %s", script, stderr)
	return string(out)
}

func newBus(t *testing.T) (*bus.Bus, string) {
	prefix := redistest.Prefix(t)
	b, err := bus.New(bus.Config{Client: redistest.Client(t), ServiceName: "go-interop", StreamPrefix: prefix}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b, prefix
}

func TestGoPublishesNodeConsumes(t *testing.T) {
	b, prefix := newBus(t)
	msg := message.NewMessage("", []byte(`{"photoId":"p-1"}`))
	msg.Metadata.Set(bus.AttrTraceParent, traceparent)
	msg.Metadata.Set(bus.AttrCorrelationID, "corr-1")
	msg.Metadata.Set(bus.AttrSubject, "p-1")
	require.NoError(t, b.Publisher().Publish("photo.uploaded", msg))

	out := node(t, "test/interop/consume.mjs", "PREFIX="+prefix, "GROUP=ts", "TYPE=photo.*", "COUNT=1")
	var ev struct {
		ID, Type, Source, Subject string
		Data                      map[string]string
		Attributes                map[string]string
		Delivery                  int
	}
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(out)), &ev), out)
	assert.Equal(t, msg.UUID, ev.ID)
	assert.Equal(t, "photo.uploaded", ev.Type)
	assert.Equal(t, "go-interop", ev.Source)
	assert.Equal(t, "p-1", ev.Subject)
	assert.Equal(t, "p-1", ev.Data["photoId"])
	assert.Equal(t, traceparent, ev.Attributes["traceparent"])
	assert.Equal(t, "corr-1", ev.Attributes["correlationid"])
	assert.Equal(t, 1, ev.Delivery)
}

func TestNodePublishesGoConsumes(t *testing.T) {
	b, prefix := newBus(t)
	sub, err := b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: "go"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs, err := sub.Subscribe(ctx, "photo.>")
	require.NoError(t, err)

	id := strings.TrimSpace(node(t, "test/interop/publish.mjs", "PREFIX="+prefix, "TYPE=photo.processed",
		`DATA={"photoId":"p-7"}`, `ATTRS={"traceparent":"`+traceparent+`","correlationid":"corr-7","causationid":"cause-7"}`))
	select {
	case m := <-msgs:
		_, malformed := bus.IsMalformed(m)
		assert.False(t, malformed)
		assert.Equal(t, id, m.UUID)
		assert.Equal(t, "photo.processed", m.Metadata.Get(bus.AttrType))
		assert.Equal(t, "node-interop", m.Metadata.Get(bus.AttrSource))
		assert.Equal(t, "p-7", m.Metadata.Get(bus.AttrSubject))
		assert.Equal(t, traceparent, m.Metadata.Get(bus.AttrTraceParent))
		assert.Equal(t, "corr-7", m.Metadata.Get(bus.AttrCorrelationID))
		assert.Equal(t, "cause-7", m.Metadata.Get(bus.AttrCausationID))
		assert.JSONEq(t, `{"photoId":"p-7"}`, string(m.Payload))
		m.Ack()
	case <-ctx.Done():
		t.Fatal("the Go subscriber got no event the Node publisher wrote")
	}
}

// The Node IngressPublisher against the real gateway's POST /v1/events: a
// structured event and a batch (JSON and binary data) reach a Go subscriber
// with their attributes; a wrong key and an invalid attribute come back as
// IngressErrors with the gateway's status and field.
func TestNodePublishesThroughIngress(t *testing.T) {
	b, _ := newBus(t)
	const apiKey = "interop-api-key-0123456789"
	g, err := gateway.New(b, gateway.Config{
		Auth:    gateway.AuthConfig{HMACSecret: []byte("interop-secret-0123456789abcdef-xyz")},
		Ingress: gateway.IngressConfig{APIKeys: []string{apiKey}},
	}, nil)
	require.NoError(t, err)
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(func() { _ = g.Close() })
	sub, err := b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: "go"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs, err := sub.Subscribe(ctx, "photo.ingested")
	require.NoError(t, err)

	out := node(t, "test/interop/ingress.mjs", "GATEWAY_URL="+srv.URL, "API_KEY="+apiKey, "TYPE=photo.ingested",
		`ATTRS={"traceparent":"`+traceparent+`","correlationid":"corr-8"}`)
	var res struct {
		One                  string
		Batch                []string
		BadKey, BadBroadcast struct {
			Status         int
			Field, Message string
		}
		Stats struct{ Published, Errors int }
	}
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(out)), &res), out)
	require.Len(t, res.Batch, 2)
	assert.Equal(t, 401, res.BadKey.Status, res.BadKey.Message)
	assert.Equal(t, 400, res.BadBroadcast.Status, res.BadBroadcast.Message)
	assert.Equal(t, "broadcast", res.BadBroadcast.Field)
	assert.Equal(t, 3, res.Stats.Published)
	assert.Equal(t, 1, res.Stats.Errors)

	var got []*message.Message
	for len(got) < 3 {
		select {
		case m := <-msgs:
			m.Ack()
			got = append(got, m)
		case <-ctx.Done():
			t.Fatalf("the Go subscriber got %d of the 3 events sent through ingress", len(got))
		}
	}
	assert.Equal(t, []string{res.One, res.Batch[0], res.Batch[1]}, []string{got[0].UUID, got[1].UUID, got[2].UUID})
	first := got[0].Metadata
	assert.Equal(t, "/node-ingress", first.Get(bus.AttrSource))
	assert.Equal(t, "p-8", first.Get(bus.AttrSubject))
	assert.Equal(t, "album-1", first.Get(bus.AttrRoom))
	assert.Equal(t, traceparent, first.Get(bus.AttrTraceParent))
	assert.Equal(t, "corr-8", first.Get(bus.AttrCorrelationID))
	assert.JSONEq(t, `{"photoId":"p-8"}`, string(got[0].Payload))
	assert.Equal(t, "alice", got[1].Metadata.Get(bus.AttrUser))
	assert.Equal(t, "application/octet-stream", got[2].Metadata.Get(bus.AttrDataContentType))
	assert.Equal(t, []byte{0, 1, 2, 255}, []byte(got[2].Payload))
	n, err := b.Client().XLen(ctx, b.Config().PushKey()).Result()
	require.NoError(t, err)
	assert.EqualValues(t, 2, n, "the room's and the user's events are copied for browsers, the unaddressed one is not")
}

// Node publishes, a Go router handles: the router's schema check passes the
// valid event (whose traceparent becomes the handler's trace) and
// dead-letters the one that violates the schema.
func TestNodePublishesGoRouterHandles(t *testing.T) {
	b, prefix := newBus(t)
	cfg := routertest.FastConfig()
	cfg.Retry.MaxAttempts = 1
	require.NoError(t, b.Schemas().Register(t.Context(), map[string][]byte{"photo.resized": []byte(`{"type":"object","required":["photoId"],"properties":{"photoId":{"type":"string"}}}`)}))
	r, err := router.New(b, cfg, nil)
	require.NoError(t, err)
	type seen struct {
		id, correlation string
		traceID         trace.TraceID
	}
	got := make(chan seen, 2)
	require.NoError(t, r.AddHandler("resizer", "photo.>", func(ctx context.Context, msg *message.Message) error {
		got <- seen{msg.UUID, msg.Metadata.Get(bus.AttrCorrelationID), trace.SpanContextFromContext(ctx).TraceID()}
		return nil
	}))
	routertest.Start(t, r)

	attrs := `ATTRS={"traceparent":"` + traceparent + `","correlationid":"corr-9"}`
	good := strings.TrimSpace(node(t, "test/interop/publish.mjs", "PREFIX="+prefix, "TYPE=photo.resized", `DATA={"photoId":"p-9"}`, attrs))
	bad := strings.TrimSpace(node(t, "test/interop/publish.mjs", "PREFIX="+prefix, "TYPE=photo.resized", `DATA={"photoId":9}`, attrs))
	select {
	case s := <-got:
		assert.Equal(t, good, s.id)
		assert.Equal(t, "corr-9", s.correlation)
		assert.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", s.traceID.String())
	case <-time.After(20 * time.Second):
		t.Fatal("the router did not handle the Node-published event")
	}
	ctx := context.Background()
	require.Eventually(t, func() bool { n, _ := b.DeadLetters().Len(ctx); return n == 1 }, 20*time.Second, 20*time.Millisecond,
		"the event that violates the schema is not dead-lettered")
	d, err := b.DeadLetters().List(ctx, "-", 1)
	require.NoError(t, err)
	assert.Equal(t, bad, d[0].Fields["id"])
	assert.Contains(t, d[0].Reason, "schema")
	assert.Equal(t, "resizer", d[0].Handler)
	select {
	case s := <-got:
		t.Fatalf("the handler ran for %s, which violates the schema", s.id)
	default:
	}
}

// The Node Consumer dead-letters a malformed entry with the fields the Go
// DeadLetterQueue reads, so bus.DeadLetterQueue.List (and eventbus dlq) shows it.
func TestNodeDeadLettersReadByGo(t *testing.T) {
	b, prefix := newBus(t)
	ctx := context.Background()
	key := b.Config().StreamKey("photo.uploaded")
	garbage, err := b.Client().XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"garbage", "1"}}).Result()
	require.NoError(t, err)
	msg := message.NewMessage("", []byte(`{"photoId":"p-1"}`))
	require.NoError(t, b.Publisher().Publish("photo.uploaded", msg))
	out := node(t, "test/interop/consume.mjs", "PREFIX="+prefix, "GROUP=ts", "TYPE=photo.uploaded", "COUNT=1")
	assert.Contains(t, out, msg.UUID)

	d, err := b.DeadLetters().List(ctx, "-", 10)
	require.NoError(t, err)
	require.Len(t, d, 1)
	assert.Contains(t, d[0].Reason, "malformed")
	assert.Equal(t, "ts", d[0].Group)
	assert.Equal(t, "photo.uploaded", d[0].Topic)
	assert.Equal(t, 1, d[0].Delivery)
	assert.JSONEq(t, `{"garbage":"1"}`, d[0].Fields["data"], "the raw entry is kept as data")
	assert.NotContains(t, d[0].Fields, "garbage", "as the Go queue writes a malformed entry: id and data only")
	raw, err := b.Client().XRange(ctx, b.Config().DeadLetterKey(), d[0].ID, d[0].ID).Result()
	require.NoError(t, err)
	require.Len(t, raw, 1)
	assert.Equal(t, garbage, raw[0].Values[bus.DLQFieldStreamID])
	assert.Equal(t, "missing required attribute(s) id, source, specversion, type", raw[0].Values["dlq_malformed"])
}

// Node schedules an event (deliverAt) in the Go bus's schedule: the Go mover
// (bus.MoveDue, what `eventbus serve` runs) moves it when due, and a Go
// subscriber gets it with its id, attributes and data.
func TestNodeSchedulesGoMoves(t *testing.T) {
	b, prefix := newBus(t)
	ctx := context.Background()
	id := strings.TrimSpace(node(t, "test/interop/publish.mjs", "PREFIX="+prefix, "TYPE=photo.reminder",
		`DATA={"photoId":"p-3"}`, `ATTRS={"correlationid":"corr-3"}`, "DELIVER_IN_MS=1500"))
	n, err := b.Client().XLen(ctx, b.Config().StreamKey("photo.reminder")).Result()
	require.NoError(t, err)
	assert.Zero(t, n, "not in its stream before it is due")
	due, err := b.Client().ZScore(ctx, b.Config().ScheduleKey("photo.reminder"), id).Result()
	require.NoError(t, err, "scheduled in the Go bus's schedule")
	assert.Greater(t, due, float64(time.Now().UnixMilli()))

	require.Eventually(t, func() bool { moved, err := b.MoveDue(ctx); require.NoError(t, err); return moved == 1 },
		20*time.Second, 50*time.Millisecond, "the Go mover never moved the Node-scheduled event")
	assert.GreaterOrEqual(t, float64(time.Now().UnixMilli()), due, "moved once due, not before")

	sub, err := b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: "go"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	msgs, err := sub.Subscribe(sctx, "photo.reminder")
	require.NoError(t, err)
	select {
	case m := <-msgs:
		m.Ack()
		_, malformed := bus.IsMalformed(m)
		assert.False(t, malformed)
		assert.Equal(t, id, m.UUID)
		assert.Equal(t, "node-interop", m.Metadata.Get(bus.AttrSource))
		assert.Equal(t, "corr-3", m.Metadata.Get(bus.AttrCorrelationID))
		assert.JSONEq(t, `{"photoId":"p-3"}`, string(m.Payload))
	case <-sctx.Done():
		t.Fatal("the moved event never reached the Go subscriber")
	}
}

// A Go and a Node publisher drop each other's repeats: both run
// bus/lua/dedup_xadd.lua with the keys of bus.Config.DedupKey, so an event id
// written by one (and its push-stream copy) is not written again by the other
// within the window, and each reports the earlier entry.
func TestGoAndNodePublishersDedupeEachOther(t *testing.T) {
	b, prefix := newBus(t)
	ctx := context.Background()
	key := b.Config().StreamKey("photo.uploaded")
	attrs := `ATTRS={"room":"album-1"}`

	msg := message.NewMessage("", []byte(`{"photoId":"p-1"}`))
	msg.Metadata.Set(bus.AttrRoom, "album-1")
	require.NoError(t, b.Publisher().Publish("photo.uploaded", msg))
	entries, err := b.Client().XRange(ctx, key, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 1)
	out := strings.TrimSpace(node(t, "test/interop/publish.mjs", "PREFIX="+prefix, "TYPE=photo.uploaded", "ID="+msg.UUID, `DATA={"photoId":"p-1"}`, attrs))
	assert.Equal(t, msg.UUID+" duplicate "+entries[0].ID, out, "Node drops the id Go wrote and reports Go's entry")

	nodeID := strings.TrimSpace(node(t, "test/interop/publish.mjs", "PREFIX="+prefix, "TYPE=photo.uploaded", `DATA={"photoId":"p-2"}`, attrs))
	again := message.NewMessage(nodeID, []byte(`{"photoId":"p-2"}`))
	again.Metadata.Set(bus.AttrRoom, "album-1")
	require.NoError(t, b.Publisher().Publish("photo.uploaded", again))
	entries, err = b.Client().XRange(ctx, key, "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, entries, 2, "one entry per id, whichever publisher wrote it")
	earlier, dup := bus.IsDuplicate(again)
	assert.True(t, dup, "Go drops the id Node wrote")
	assert.Equal(t, entries[1].ID, earlier)
	assert.Equal(t, nodeID, entries[1].Values[bus.AttrID])
	assert.EqualValues(t, 1, b.Publisher().Duplicates())
	n, err := b.Client().XLen(ctx, b.Config().PushKey()).Result()
	require.NoError(t, err)
	assert.EqualValues(t, 2, n, "one push copy per id")
}
