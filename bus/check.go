package bus

import (
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Prepare does to msgs everything Publish does before writing them, and
// writes nothing: enrichment (id, type, source, specversion, time,
// datacontenttype), correlation, causation and trace context from each
// message's context, and validation, the JSON Schema of the type included
// (its version named in dataschema). It is for publish paths that store an
// event before it reaches Redis (the transactional outbox): an event that
// Publish would refuse is refused at the source, while the caller can still
// roll back. A later Publish of the prepared messages keeps their attributes
// and validates them again. It records no producer span: the span of the
// event is the one Publish records when the event is written.
func (p *Publisher) Prepare(topic string, msgs ...*message.Message) error {
	if err := ValidateType(topic); err != nil {
		return err
	}
	if len(msgs) == 0 {
		return nil
	}
	sch, err := p.schemas.cache.latest(msgs[0].Context(), topic)
	if err != nil {
		return fmt.Errorf("%d event(s) of %s not prepared: %w", len(msgs), topic, err)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for i, msg := range msgs {
		if msg.UUID == "" {
			msg.UUID = watermill.NewUUID()
		}
		if msg.Metadata == nil {
			msg.Metadata = make(message.Metadata)
		}
		p.tracer.carry(msg.Context(), msg)
		if _, err := p.prepare(topic, msg, now, sch); err != nil {
			return fmt.Errorf("event %d of %d (id %s) is invalid: %w", i+1, len(msgs), msg.UUID, err)
		}
	}
	return nil
}
