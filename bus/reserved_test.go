package bus_test

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

// reservedNames is every name the bus reserves by ReservedAttributes, and
// names under the reserved prefixes it does not use (yet).
func reservedNames() []string {
	return append(bus.ReservedAttributes(), "_eventbus_future", "_watermill_delayed_until", "_x", "dlq_note")
}

// One subtest per reserved name: bus.WithAttribute cannot set it. NewMessage
// (and so bus.Publish) refuses it naming the attribute, a message given the
// option by hand is refused by the Publisher, and nothing is written.
func TestWithAttributeRefusesReserved(t *testing.T) {
	b := newTestBus(t)
	ctx := ctxT(t)
	key := b.Config().StreamKey("reserved.attr")
	for _, name := range reservedNames() {
		t.Run(name, func(t *testing.T) {
			_, err := bus.NewMessage(ctx, map[string]int{"n": 1}, bus.WithAttribute(name, "nobody"))
			require.ErrorIs(t, err, bus.ErrReservedAttribute)
			require.ErrorIs(t, err, bus.ErrInvalidAttribute)
			assert.Contains(t, err.Error(), `"`+name+`"`)

			_, err = bus.Publish(ctx, b.Publisher(), "reserved.attr", map[string]int{"n": 1}, bus.WithAttribute(name, "nobody"))
			require.ErrorIs(t, err, bus.ErrReservedAttribute)

			m := message.NewMessage("by-hand-"+name, []byte(`{}`))
			bus.WithAttribute(name, "nobody")(m)
			assert.Empty(t, m.Metadata.Get(name), "the attribute was set")
			err = b.Publisher().Publish("reserved.attr", m)
			require.ErrorIs(t, err, bus.ErrReservedAttribute)
			assert.Contains(t, err.Error(), `"`+name+`"`)

			n, err := b.Client().XLen(ctx, key).Result()
			require.NoError(t, err)
			assert.Zero(t, n, "something was written")
		})
	}
}

// Names that are not reserved are set as before, and the bus's own options
// that use reserved metadata (WithDeliverAt) still work.
func TestWithAttributeAllowsOthers(t *testing.T) {
	for _, name := range []string{"tenant", "redrive", "group", "data2", "deliver", "x_y"} {
		assert.NoError(t, bus.CheckAttributeName(name), name)
		m, err := bus.NewMessage(t.Context(), 1, bus.WithAttribute(name, "v"))
		require.NoError(t, err, name)
		assert.Equal(t, "v", m.Metadata.Get(name))
	}
	m, err := bus.NewMessage(t.Context(), 1, bus.WithDelay(0))
	require.NoError(t, err)
	assert.NotEmpty(t, m.Metadata.Get(bus.MetaDeliverAt))
}
