package bus

import (
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Prepare enriches (id, type, source, specversion, time, datacontenttype)
// and validates msgs exactly as Publish would before writing them, and
// writes nothing. It is for publish paths that store an event before it
// reaches Redis (the transactional outbox): an event that Publish would
// refuse is refused at the source, while the caller can still roll back.
// A later Publish of the prepared messages keeps their attributes.
func (p *Publisher) Prepare(topic string, msgs ...*message.Message) error {
	if err := ValidateType(topic); err != nil {
		return err
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for i, msg := range msgs {
		if _, err := p.prepare(topic, msg, now); err != nil {
			return fmt.Errorf("event %d of %d (id %s) is invalid: %w", i+1, len(msgs), msg.UUID, err)
		}
	}
	return nil
}
