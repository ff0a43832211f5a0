package middleware

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/shared-infra/eventbus/bus"
)

// DeadLetter sends an event whose handling failed (after Retry gave up, or at
// once for a permanent error) to the bus's dead-letter stream with the
// reason, the handler, its consumer group, the attempt count and the original
// topic, then acks it so consumption goes on. Put it outside Retry (Watermill
// issues #580/#645: a poison queue inside a retry makes the retry never
// happen). If the dead-letter write itself fails, the error is returned and
// the event is nacked (redelivered later).
//
// It writes to bus.DeadLetterQueue itself rather than through Watermill's
// PoisonQueue: that one publishes to a message.Publisher with its reason in
// metadata keys the dead-letter entry must not carry, where the queue takes
// the reason, handler, group and attempts as fields of their own.
type DeadLetter struct {
	Queue   *bus.DeadLetterQueue
	Handler string
	// OnDeadLetter, when set, is called after an event is dead-lettered.
	OnDeadLetter func(msg *message.Message, reason error)
	Logger       watermill.LoggerAdapter
}

// Middleware implements message.HandlerMiddleware. An event whose handling
// ended because its context was cancelled (the router is closing) is not
// dead-lettered: it is nacked and stays pending for another instance.
func (d DeadLetter) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if err == nil {
			return out, nil
		}
		if errors.Is(err, context.Canceled) && msg.Context().Err() != nil {
			return nil, err
		}
		if werr := d.add(msg, err); werr != nil {
			return nil, errors.Join(err, fmt.Errorf("cannot dead-letter the event: %w", werr))
		}
		return nil, nil
	}
}

// add writes msg to the dead-letter stream with reason and logs it.
func (d DeadLetter) add(msg *message.Message, reason error) error {
	handler := d.Handler
	if handler == "" {
		handler = message.HandlerNameFromCtx(msg.Context())
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(msg.Context()), 10*time.Second)
	id, err := d.Queue.Add(ctx, msg, bus.DeadLetterInfo{
		Reason: reason.Error(), Handler: handler, Group: msg.Metadata.Get(bus.MetaGroup), Attempts: Attempts(msg),
	})
	cancel()
	fields := EventLogFields(msg).Add(watermill.LogFields{"handler": handler, "reason": reason.Error()})
	if err != nil {
		if d.Logger != nil {
			d.Logger.Error("Cannot dead-letter event; it stays pending and will be redelivered", err, fields)
		}
		return err
	}
	if d.Logger != nil {
		d.Logger.Error("Event dead-lettered", nil, fields.Add(watermill.LogFields{"dlq_id": id}))
	}
	if d.OnDeadLetter != nil {
		d.OnDeadLetter(msg, reason)
	}
	return nil
}

// EventLogFields are the fields every log line about msg carries: its id,
// type, handler and trace id ("" when unknown).
func EventLogFields(msg *message.Message) watermill.LogFields {
	typ := msg.Metadata.Get(bus.MetaTopic)
	if typ == "" {
		typ = msg.Metadata.Get(bus.AttrType)
	}
	return watermill.LogFields{
		"event_id": msg.UUID, "event_type": typ,
		"handler": message.HandlerNameFromCtx(msg.Context()), "trace_id": TraceID(msg),
	}
}

// MaxDeliveries fails an event permanently (so DeadLetter takes it) when
// Redis has delivered it more than n times: a handler that crashes its
// process, or is killed, on an event would otherwise get it forever. The
// count is the stream's own delivery counter, so it survives restarts.
func MaxDeliveries(n int) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		if n <= 0 {
			return h
		}
		return func(msg *message.Message) ([]*message.Message, error) {
			if d, _ := strconv.Atoi(msg.Metadata.Get(bus.MetaDelivery)); d > n {
				return nil, permanentf("%w: delivered %d times, the limit is %d", ErrTooManyDeliveries, d, n)
			}
			return h(msg)
		}
	}
}
