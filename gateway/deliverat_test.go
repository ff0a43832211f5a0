package gateway_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/gateway"
)

func TestMessageFromEventDeliverAtExtension(t *testing.T) {
	e := event.New()
	e.SetID("id-1")
	e.SetType("photo.retry")
	e.SetSource("s")
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	e.SetExtension(bus.ExtDeliverAt, at)
	msg, err := gateway.MessageFromEvent(e)
	require.NoError(t, err)
	assert.Equal(t, strconv.FormatInt(at.UnixMilli(), 10), msg.Metadata.Get(bus.MetaDeliverAt))
	assert.Empty(t, msg.Metadata.Get(bus.ExtDeliverAt), "a due time, not an attribute")

	e.SetExtension(bus.ExtDeliverAt, "tomorrow")
	_, err = gateway.MessageFromEvent(e)
	assert.ErrorIs(t, err, bus.ErrInvalidAttribute)
}
