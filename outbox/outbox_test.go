package outbox_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/outbox"
	"github.com/shared-infra/eventbus/photo"
)

func TestEventKeepsEverythingAcrossTheHop(t *testing.T) {
	e := newEnv(t, nil, photo.Schemas())
	ctx := context.Background()
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx = trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))

	tx, err := e.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(ctx, `INSERT INTO "`+e.photos+`" (id, owner, event_id) VALUES ('p1', 'u1', 'ev-1')`)
	require.NoError(t, err)
	id, err := bus.Publish(ctx, e.ob.Publisher(tx), photo.TypeUploaded, photo.Uploaded{
		PhotoID: "p1", OwnerID: "u1", Key: "originals/p1.jpg", Filename: "a.jpg", ContentType: "image/jpeg", Size: 10,
	}, bus.WithID("ev-1"), bus.WithSubject("p1"), bus.WithRoom("album-7"), bus.WithUser("u1"),
		bus.WithCorrelationID("corr-9"), bus.WithAttribute("tenant", "acme"))
	require.NoError(t, err)
	require.Equal(t, "ev-1", id)
	require.NoError(t, tx.Commit())

	e.forward(t, outbox.ForwarderConfig{})
	got := e.entries(t, photo.TypeUploaded, 1)
	require.Len(t, got, 1)
	v := got[0].Values
	assert.Equal(t, "ev-1", v[bus.AttrID])
	assert.Equal(t, photo.TypeUploaded, v[bus.AttrType])
	assert.Equal(t, "outbox-test", v[bus.AttrSource])
	assert.Equal(t, "p1", v[bus.AttrSubject])
	assert.Equal(t, "album-7", v[bus.AttrRoom])
	assert.Equal(t, "u1", v[bus.AttrUser])
	assert.Equal(t, "corr-9", v[bus.AttrCorrelationID])
	assert.Equal(t, "acme", v["tenant"])
	assert.Contains(t, v[bus.AttrTraceParent], "4bf92f3577b34da6a3ce929d0e0e4736", "the trace of the request that stored the event")
	assert.JSONEq(t, `{"photoId":"p1","ownerId":"u1","key":"originals/p1.jpg","filename":"a.jpg","contentType":"image/jpeg","size":10}`, v[bus.FieldData].(string))
	// Addressed, so the browser copy went to the push stream too.
	push, err := e.bus.Client().XRange(ctx, e.bus.Config().PushKey(), "-", "+").Result()
	require.NoError(t, err)
	require.Len(t, push, 1)
	assert.Equal(t, "ev-1", push[0].Values[bus.AttrID])
}

func TestRolledBackEventNeverReachesTheBus(t *testing.T) {
	e := newEnv(t, nil, nil)
	ctx := context.Background()
	for i, commit := range []bool{false, true, false} {
		tx, err := e.db.BeginTx(ctx, nil)
		require.NoError(t, err)
		_, err = bus.Publish(ctx, e.ob.Publisher(tx), "order.placed", map[string]int{"n": i}, bus.WithID([]string{"a", "b", "c"}[i]))
		require.NoError(t, err)
		if commit {
			require.NoError(t, tx.Commit())
		} else {
			require.NoError(t, tx.Rollback())
		}
	}
	e.forward(t, outbox.ForwarderConfig{})
	// The rolled-back rows never existed: once the committed one is
	// forwarded, the outbox is empty and the stream holds only it.
	got := e.entries(t, "order.placed", 1)
	require.Len(t, got, 1)
	assert.Equal(t, "b", got[0].Values[bus.AttrID])
}

func TestInvalidEventFailsTheTransaction(t *testing.T) {
	e := newEnv(t, nil, photo.Schemas())
	ctx := context.Background()
	cases := []struct {
		name  string
		topic string
		data  any
		md    map[string]string // set on the message's metadata directly
		is    error
	}{
		{"bad type", "Photo..x", map[string]int{}, nil, bus.ErrInvalidType},
		{"fails schema", photo.TypeUploaded, map[string]string{"photoId": "p"}, nil, bus.ErrSchemaViolation},
		{"bad attribute", "order.placed", map[string]int{}, map[string]string{bus.AttrBroadcast: "yes"}, bus.ErrInvalidAttribute},
		{"reserved key", "order.placed", map[string]int{}, map[string]string{bus.FieldData: "x"}, bus.ErrInvalidAttribute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tx, err := e.db.BeginTx(ctx, nil)
			require.NoError(t, err)
			_, err = tx.ExecContext(ctx, `INSERT INTO "`+e.photos+`" (id, owner, event_id) VALUES ($1, 'u', 'x')`, c.name)
			require.NoError(t, err)
			msg, err := bus.NewMessage(ctx, c.data)
			require.NoError(t, err)
			for k, v := range c.md {
				msg.Metadata.Set(k, v)
			}
			err = e.ob.Publish(tx, c.topic, msg)
			require.Error(t, err)
			assert.True(t, errors.Is(err, c.is), "error %q should wrap %v", err, c.is)
			// A caller that commits anyway gets an error and writes nothing.
			require.Error(t, tx.Commit(), "commit after a refused event must fail")
			var n int
			require.NoError(t, e.db.QueryRowContext(ctx, `SELECT count(*) FROM "`+e.photos+`" WHERE id = $1`, c.name).Scan(&n))
			assert.Zero(t, n, "the row of the failed transaction")
			rows, _, err := outbox.Pending(ctx, e.db, e.table)
			require.NoError(t, err)
			assert.Zero(t, rows)
		})
	}
}

func TestNilTransaction(t *testing.T) {
	e := newEnv(t, nil, nil)
	_, err := bus.Publish(context.Background(), e.ob.Publisher(nil), "order.placed", 1)
	require.ErrorContains(t, err, "nil transaction")
}

func TestConfigErrors(t *testing.T) {
	_, err := outbox.New(outbox.Config{Table: "Bad-Name"}, nil)
	require.ErrorIs(t, err, outbox.ErrInvalidConfig)
	require.ErrorIs(t, err, bus.ErrInvalidConfig, "as in every package")
	require.ErrorContains(t, err, `table "Bad-Name" must match`)
	require.ErrorContains(t, err, "Bus is nil")
	_, err = outbox.NewForwarder(nil, nil, outbox.ForwarderConfig{BatchSize: -1}, nil)
	require.ErrorIs(t, err, bus.ErrInvalidConfig)
	require.ErrorContains(t, err, "BatchSize -1 must be between 1 and 10000")
	require.ErrorContains(t, err, "db is nil")
	require.ErrorContains(t, err, "publisher is nil")
}

func TestRowThatCannotBeForwardedIsSetAside(t *testing.T) {
	e := newEnv(t, nil, nil)
	ctx := context.Background()
	_, err := e.db.ExecContext(ctx, `INSERT INTO "`+e.table+`" (uuid, payload, metadata) VALUES ('garbage-1', '{"hello": 1}', '{}')`)
	require.NoError(t, err)
	tx, err := e.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = bus.Publish(ctx, e.ob.Publisher(tx), "order.placed", 1, bus.WithID("good"))
	require.NoError(t, err)
	require.NoError(t, tx.Commit())

	e.forward(t, outbox.ForwarderConfig{})
	got := e.entries(t, "order.placed", 1)
	require.Len(t, got, 1)
	assert.Equal(t, "good", got[0].Values[bus.AttrID])
	var id, reason string
	require.NoError(t, e.db.QueryRowContext(ctx, `SELECT id, reason FROM "`+outbox.FailedTable(e.table)+`"`).Scan(&id, &reason))
	assert.Equal(t, "garbage-1", id)
	assert.Contains(t, reason, "no destination_topic")
}

func TestEventTheBusRefusesAtForwardingIsSetAside(t *testing.T) {
	e := newEnv(t, nil, nil)
	ctx := context.Background()
	tx, err := e.db.BeginTx(ctx, nil)
	require.NoError(t, err)
	_, err = bus.Publish(ctx, e.ob.Publisher(tx), "order.placed", strings.Repeat("x", 2000), bus.WithID("too-big"))
	require.NoError(t, err)
	_, err = bus.Publish(ctx, e.ob.Publisher(tx), "order.placed", "small", bus.WithID("fits"))
	require.NoError(t, err)
	require.NoError(t, tx.Commit())

	// The forwarding bus has a lower size limit than the writer's had.
	fb, err := bus.New(bus.Config{ServiceName: "forwarder", Client: e.bus.Client(), StreamPrefix: e.bus.Config().StreamPrefix, MaxEventSize: 1000}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = fb.Close() })
	f, err := outbox.NewForwarder(e.db, fb.Publisher(), outbox.ForwarderConfig{Table: e.table, PollInterval: 20 * time.Millisecond}, nil)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() { require.NoError(t, f.Close()); require.NoError(t, <-done) })

	got := e.entries(t, "order.placed", 1)
	require.Len(t, got, 1)
	assert.Equal(t, "fits", got[0].Values[bus.AttrID])
	var id, typ, reason string
	var data []byte
	require.NoError(t, e.db.QueryRowContext(ctx, `SELECT id, type, data, reason FROM "`+outbox.FailedTable(e.table)+`"`).Scan(&id, &typ, &data, &reason))
	assert.Equal(t, "too-big", id)
	assert.Equal(t, "order.placed", typ)
	assert.Equal(t, `"`+strings.Repeat("x", 2000)+`"`, string(data))
	assert.Contains(t, reason, "exceeds the limit of 1000 bytes")
}
