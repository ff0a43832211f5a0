package middleware

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	wmmw "github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/shared-infra/eventbus/bus"
)

// DeadLetter sends an event whose handling failed (after Retry gave up, or at
// once for a permanent error) to the bus's dead-letter stream with the
// reason, the handler, its consumer group, the attempt count and the original
// topic, then acks it so consumption goes on. It wraps Watermill's
// PoisonQueue; put it outside Retry. If the dead-letter write itself fails,
// the error is returned and the event is nacked (redelivered later).
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
		// Only a failure goes through Watermill's PoisonQueue, which gets the
		// handler's result replayed: success, nearly every event, costs no
		// extra frames or allocations (see Retry.Middleware for why).
		out, herr := h(msg)
		if herr == nil {
			return out, nil
		}
		replay := func(*message.Message) ([]*message.Message, error) { return out, herr }
		pq, err := wmmw.PoisonQueueWithFilter(dlqPublisher{d}, "dead-letters", func(err error) bool {
			return !errors.Is(err, context.Canceled) || msg.Context().Err() == nil
		})
		if err != nil { // only for an empty topic name, which this is not
			panic(err)
		}
		return pq(replay)(msg)
	}
}

// dlqPublisher adapts the dead-letter queue to the message.Publisher that
// Watermill's PoisonQueue publishes to.
type dlqPublisher struct{ d DeadLetter }

func (p dlqPublisher) Publish(_ string, msgs ...*message.Message) error {
	for _, m := range msgs {
		reason := m.Metadata.Get(wmmw.ReasonForPoisonedKey)
		for _, k := range []string{wmmw.ReasonForPoisonedKey, wmmw.PoisonedTopicKey, wmmw.PoisonedHandlerKey, wmmw.PoisonedSubscriberKey} {
			delete(m.Metadata, k)
		}
		handler := p.d.Handler
		if handler == "" {
			handler = message.HandlerNameFromCtx(m.Context())
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(m.Context()), 10*time.Second)
		id, err := p.d.Queue.Add(ctx, m, bus.DeadLetterInfo{
			Reason: reason, Handler: handler, Group: m.Metadata.Get(bus.MetaGroup), Attempts: Attempts(m),
		})
		cancel()
		fields := EventLogFields(m).Add(watermill.LogFields{"handler": handler, "reason": reason})
		if err != nil {
			if p.d.Logger != nil {
				p.d.Logger.Error("Cannot dead-letter event; it stays pending and will be redelivered", err, fields)
			}
			return err
		}
		if p.d.Logger != nil {
			p.d.Logger.Error("Event dead-lettered", nil, fields.Add(watermill.LogFields{"dlq_id": id}))
		}
		if p.d.OnDeadLetter != nil {
			p.d.OnDeadLetter(m, errString(reason))
		}
	}
	return nil
}

func (dlqPublisher) Close() error { return nil }

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

type errString string

func (e errString) Error() string { return string(e) }

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
