package bus_test

import (
	"context"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
)

func deliveredMessage(id, group string) *message.Message {
	m := message.NewMessage(id, []byte(`{}`))
	m.Metadata.Set(bus.MetaTopic, "dlq.retry")
	m.Metadata.Set(bus.MetaStreamID, "1700000000000-0")
	m.Metadata.Set(bus.MetaGroup, group)
	m.Metadata.Set(bus.MetaDelivery, "1")
	return m
}

// When a dead-letter write fails, the event comes back (redelivered, maybe
// past MaxDeliveries): it is then dead-lettered with its first, real reason,
// the later one kept as LastReason.
func TestDeadLetterKeepsTheOriginalReason(t *testing.T) {
	b := newTestBus(t)
	c := b.Client()
	ctx := context.Background()
	q := b.DeadLetters()
	// The dead-letter stream cannot be written: its key holds a string.
	require.NoError(t, c.Set(ctx, b.Config().DeadLetterKey(), "not a stream", 0).Err())
	_, err := q.Add(ctx, deliveredMessage("e-1", "g"), bus.DeadLetterInfo{Reason: "invalid photo: no owner", Group: "g", Handler: "h"})
	require.Error(t, err)
	require.NoError(t, c.Del(ctx, b.Config().DeadLetterKey()).Err())

	_, err = q.Add(ctx, deliveredMessage("e-1", "g"), bus.DeadLetterInfo{Reason: "too many deliveries: delivered 11 times, the limit is 10", Group: "g", Handler: "h"})
	require.NoError(t, err)
	// Another group's dead letter of the same entry keeps its own reason.
	_, err = q.Add(ctx, deliveredMessage("e-1", "other"), bus.DeadLetterInfo{Reason: "other reason", Group: "other", Handler: "o"})
	require.NoError(t, err)
	dl, err := q.List(ctx, "", 10)
	require.NoError(t, err)
	require.Len(t, dl, 2)
	assert.Equal(t, "invalid photo: no owner", dl[0].Reason)
	assert.Equal(t, "too many deliveries: delivered 11 times, the limit is 10", dl[0].LastReason)
	assert.Equal(t, "other reason", dl[1].Reason)
	assert.Empty(t, dl[1].LastReason)

	// Once written, the reason is forgotten: a later failure is its own.
	_, err = q.Add(ctx, deliveredMessage("e-1", "g"), bus.DeadLetterInfo{Reason: "again", Group: "g"})
	require.NoError(t, err)
	dl, err = q.List(ctx, "", 10)
	require.NoError(t, err)
	assert.Equal(t, "again", dl[2].Reason)
}
