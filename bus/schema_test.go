package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

const orderV1 = `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","required":["orderId"],"properties":{"orderId":{"type":"string","minLength":1},"total":{"type":"number"}}}`

func TestSchemaPutGetListVersions(t *testing.T) {
	ctx := context.Background()
	b := newTestBus(t)
	reg := b.Schemas()

	_, err := reg.Get(ctx, "order.placed", 0)
	require.ErrorIs(t, err, bus.ErrUnknownSchema)

	v1, err := reg.Put(ctx, "order.placed", []byte(orderV1))
	require.NoError(t, err)
	assert.Equal(t, 1, v1.Version)
	assert.Equal(t, "urn:eventbus:schema:order.placed:1", v1.URI)
	again, err := reg.Put(ctx, "order.placed", []byte("  "+orderV1+"\n"))
	require.NoError(t, err)
	assert.Equal(t, v1, again, "the same schema (whitespace aside) is the same version: nothing stored")

	v2, err := reg.Put(ctx, "order.placed", []byte(`{"type":"object","required":["orderId"]}`))
	require.NoError(t, err)
	assert.Equal(t, 2, v2.Version)
	got, err := reg.Get(ctx, "order.placed", 1)
	require.NoError(t, err)
	assert.JSONEq(t, orderV1, string(got.Document), "old versions stay")
	latest, err := reg.Get(ctx, "order.placed", 0)
	require.NoError(t, err)
	assert.Equal(t, 2, latest.Version)
	_, err = reg.Get(ctx, "order.placed", 3)
	require.ErrorIs(t, err, bus.ErrUnknownSchema)

	_, err = reg.Put(ctx, "order.shipped", []byte(`{"type":"object"}`))
	require.NoError(t, err)
	list, err := reg.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, []string{"order.placed", "order.shipped"}, []string{list[0].Type, list[1].Type})
	assert.Equal(t, []int{2, 1}, []int{list[0].Version, list[1].Version})
}

func TestSchemaPutRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	reg := newTestBus(t).Schemas()
	for _, tc := range []struct{ name, typ, schema, want string }{
		{"bad type", "Order..x", `{}`, "tokens must match"},
		{"not JSON", "order.placed", `{"type":`, "byte offset"},
		{"does not compile", "order.placed", `{"type":"object","properties":{"total":{"minimum":"zero"}}}`, `at "/properties/total/minimum"`},
		{"bad type keyword", "order.placed", `{"type":12}`, `at "/type"`},
		{"not an object", "order.placed", `[1]`, "a schema is a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := reg.Put(ctx, tc.typ, []byte(tc.schema))
			require.Error(t, err)
			if tc.name == "bad type" {
				require.ErrorIs(t, err, bus.ErrInvalidType, "the same error as publish")
				_, perr := bus.Publish(ctx, newTestBus(t).Publisher(), tc.typ, map[string]int{})
				assert.Equal(t, errors.Unwrap(perr) != nil, errors.Unwrap(err) != nil)
				assert.ErrorIs(t, perr, bus.ErrInvalidType)
			} else {
				require.ErrorIs(t, err, bus.ErrInvalidSchema)
			}
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	list, err := reg.List(ctx)
	require.NoError(t, err)
	assert.Empty(t, list, "nothing stored")
}

func TestPublisherValidatesAgainstTheLatestSchemaAndNamesIt(t *testing.T) {
	ctx := context.Background()
	b := newTestBus(t)
	s, err := b.Schemas().Put(ctx, "order.placed", []byte(orderV1))
	require.NoError(t, err)

	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"orderId":"A-1","total":3}`))
	msg.Metadata.Set(bus.AttrDataSchema, bus.SchemaURI("order.placed", 9)) // the publisher's to set
	require.NoError(t, b.Publisher().Publish("order.placed", msg))
	entries := b.Client().XRange(ctx, b.Config().StreamKey("order.placed"), "-", "+").Val()
	require.Len(t, entries, 1)
	assert.Equal(t, s.URI, entries[0].Values[bus.AttrDataSchema])

	bad := message.NewMessage(watermill.NewUUID(), []byte(`{"total":"three"}`))
	err = b.Publisher().Publish("order.placed", msg.Copy(), bad)
	require.ErrorIs(t, err, bus.ErrSchemaViolation)
	require.ErrorIs(t, err, bus.ErrInvalidData)
	assert.Contains(t, err.Error(), `event 2 of 2 (id `+bad.UUID+`) not published, nothing written`)
	assert.Contains(t, err.Error(), `at "": missing property 'orderId'`)
	assert.Contains(t, err.Error(), `at "/total": got string, want number`)
	assert.Equal(t, int64(1), b.Client().XLen(ctx, b.Config().StreamKey("order.placed")).Val(), "nothing of the refused call written")

	text := message.NewMessage(watermill.NewUUID(), []byte(`A-1`))
	text.Metadata.Set(bus.AttrDataContentType, "text/plain")
	require.ErrorIs(t, b.Publisher().Publish("order.placed", text), bus.ErrSchemaViolation, "a type with a schema takes JSON data only")

	counts := b.Publisher().Counts()["order.placed"]
	assert.Equal(t, bus.PublishCounts{Published: 1, Failed: 3}, counts, "the publisher counts what it wrote and what it refused")
}

// A new version stored by one process is used by another bus's publisher
// within SchemaResyncInterval — at once when the announcement arrives, but
// only the bound is asserted.
func TestNewSchemaVersionReachesOtherBusesWithinTheBound(t *testing.T) {
	ctx := context.Background()
	const bound = 300 * time.Millisecond
	a := newTestBus(t, func(c *bus.Config) { c.SchemaResyncInterval = bound })
	other := newTestBus(t, func(c *bus.Config) { c.StreamPrefix = a.Config().StreamPrefix })
	pub := func() error {
		_, err := bus.Publish(ctx, a.Publisher(), "order.placed", map[string]any{"orderId": "A-1"})
		return err
	}
	require.NoError(t, pub(), "no schema yet")
	_, err := other.Schemas().Put(ctx, "order.placed", []byte(`{"type":"object","required":["orderId","total"]}`), bus.WithForce())
	require.NoError(t, err)
	time.Sleep(bound + 50*time.Millisecond) // the bound under test, not a guess at a delay
	require.ErrorIs(t, pub(), bus.ErrSchemaViolation, "bus a uses the new version within SchemaResyncInterval")
}

func TestSchemaPutChecksRetainedEvents(t *testing.T) {
	ctx := context.Background()
	b := newTestBus(t)
	pub := b.Publisher()
	for _, d := range []string{`{"orderId":"A-1"}`, `{"orderId":"A-2","total":5}`, `{"orderId":"A-3"}`} {
		require.NoError(t, pub.Publish("order.placed", message.NewMessage(watermill.NewUUID(), []byte(d))))
	}
	streamIDs := b.Client().XRange(ctx, b.Config().StreamKey("order.placed"), "-", "+").Val()
	require.Len(t, streamIDs, 3)

	strict := []byte(`{"type":"object","required":["orderId","total"]}`)
	err := b.Schemas().Check(ctx, "order.placed", strict)
	var ie *bus.IncompatibleSchemaError
	require.ErrorAs(t, err, &ie)
	require.ErrorIs(t, err, bus.ErrIncompatibleSchema)
	assert.Equal(t, []string{streamIDs[0].ID, streamIDs[2].ID}, ie.IDs, "the rejected entries, oldest first")
	assert.Equal(t, 2, ie.Rejected)
	assert.Equal(t, 3, ie.Checked)
	assert.Contains(t, err.Error(), streamIDs[0].ID)
	assert.Contains(t, err.Error(), "missing property 'total'")

	_, err = b.Schemas().Put(ctx, "order.placed", strict)
	require.ErrorAs(t, err, &ie)
	_, err = b.Schemas().Get(ctx, "order.placed", 0)
	require.ErrorIs(t, err, bus.ErrUnknownSchema, "refused: nothing stored")

	s, err := b.Schemas().Put(ctx, "order.placed", []byte(orderV1))
	require.NoError(t, err, "a schema every retained event matches is accepted")
	assert.Equal(t, 1, s.Version)
	s, err = b.Schemas().Put(ctx, "order.placed", strict, bus.WithForce())
	require.NoError(t, err, "forced")
	assert.Equal(t, 2, s.Version)
}

func TestRedriveGoesThroughTheSchema(t *testing.T) {
	ctx := context.Background()
	b := newTestBus(t)
	q := b.DeadLetters()
	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"total":1}`))
	for k, v := range map[string]string{bus.AttrID: msg.UUID, bus.AttrType: "order.placed", bus.AttrSource: "t", bus.AttrSpecVersion: "1.0", bus.MetaTopic: "order.placed"} {
		msg.Metadata.Set(k, v)
	}
	_, err := q.Add(ctx, msg, bus.DeadLetterInfo{Reason: "boom", Handler: "h", Group: "svc.h", Attempts: 1})
	require.NoError(t, err)
	_, err = b.Schemas().Put(ctx, "order.placed", []byte(orderV1), bus.WithForce())
	require.NoError(t, err)

	n, err := q.Redrive(ctx, bus.RedriveFilter{})
	require.ErrorIs(t, err, bus.ErrSchemaViolation)
	assert.Zero(t, n)
	left, err := q.Len(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), left, "the dead letter stays")
	assert.Zero(t, b.Client().XLen(ctx, b.Config().StreamKey("order.placed")).Val(), "nothing written")
}
