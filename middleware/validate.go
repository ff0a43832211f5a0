package middleware

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/shared-infra/eventbus/bus"
)

// Validator checks received events: envelope attributes present and well
// formed and, when Schemas is set, the data against the JSON Schema version
// its dataschema attribute names (the version the publisher validated it
// against), or the type's latest version for an event without one. Its
// Middleware makes an invalid event, or one naming a schema version the
// registry does not hold, a permanent failure (dead-lettered at once with
// the reason, never retried). Publishing needs no validator: the bus
// Publisher checks every event against its type's schema itself.
type Validator struct {
	// AllowLegacy lets through messages without CloudEvents attributes
	// (entries written by watermill-redisstream's default marshaller).
	AllowLegacy bool
	// Schemas is the bus's schema registry (bus.Bus.Schemas); nil checks no
	// data.
	Schemas *bus.SchemaRegistry
}

// NewValidator returns a Validator that checks data against schemas (nil:
// no data checks).
func NewValidator(schemas *bus.SchemaRegistry) *Validator {
	return &Validator{Schemas: schemas}
}

// Validate checks msg as a received event. The error wraps ErrInvalidEvent,
// except for a Redis error while reading a schema version.
func (v *Validator) Validate(msg *message.Message) error {
	if reason, bad := bus.IsMalformed(msg); bad {
		return fmt.Errorf("%w: malformed entry: %s", ErrInvalidEvent, reason)
	}
	md := msg.Metadata
	if v.AllowLegacy && md.Get(bus.AttrSpecVersion) == "" && md.Get(bus.AttrType) == "" {
		return nil
	}
	for _, a := range []string{bus.AttrID, bus.AttrType, bus.AttrSource, bus.AttrSpecVersion} {
		if md.Get(a) == "" {
			return fmt.Errorf("%w: attribute %q is missing", ErrInvalidEvent, a)
		}
	}
	if sv := md.Get(bus.AttrSpecVersion); sv != bus.SpecVersion {
		return fmt.Errorf("%w: specversion %q is not %q", ErrInvalidEvent, sv, bus.SpecVersion)
	}
	if err := bus.ValidateType(md.Get(bus.AttrType)); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	if t := md.Get(bus.AttrTime); t != "" {
		if _, err := time.Parse(time.RFC3339Nano, t); err != nil {
			return fmt.Errorf("%w: time %q is not RFC 3339", ErrInvalidEvent, t)
		}
	}
	return v.ValidateData(msg.Context(), md.Get(bus.AttrType), md.Get(bus.AttrDataSchema), msg.Payload)
}

// ValidateData checks data of an event of eventType whose dataschema
// attribute is dataschema (see bus.SchemaRegistry.ValidateData). Data that
// does not match, or a dataschema naming an unknown version, gives an error
// that wraps ErrInvalidEvent (and bus.ErrSchemaViolation or
// bus.ErrUnknownSchema) and says why; a Redis error is returned as it is
// (transient: the event is retried).
func (v *Validator) ValidateData(ctx context.Context, eventType, dataschema string, data []byte) error {
	if v.Schemas == nil {
		return nil
	}
	err := v.Schemas.ValidateData(ctx, eventType, dataschema, data)
	if errors.Is(err, bus.ErrSchemaViolation) || errors.Is(err, bus.ErrUnknownSchema) || errors.Is(err, bus.ErrInvalidSchema) {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	return err
}

// Middleware implements message.HandlerMiddleware: an invalid event fails
// permanently without reaching the handler.
func (v *Validator) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if err := v.Validate(msg); err != nil {
			if errors.Is(err, ErrInvalidEvent) {
				return nil, Permanent(err)
			}
			return nil, err
		}
		return h(msg)
	}
}
