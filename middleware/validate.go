package middleware

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/shared-infra/eventbus/bus"
)

// Validator checks events: envelope attributes present and well formed and,
// when a JSON Schema is registered for the event's type, the data against it.
// Its Middleware makes an invalid incoming event a permanent failure (dead-
// lettered at once, never retried); its Publisher rejects an invalid event
// before it is written.
type Validator struct {
	// AllowLegacy lets through messages without CloudEvents attributes
	// (entries written by watermill-redisstream's default marshaller).
	AllowLegacy bool

	mu      sync.RWMutex
	schemas map[string]*jsonschema.Schema
}

// NewValidator compiles schemas (event type -> JSON Schema document).
func NewValidator(schemas map[string][]byte) (*Validator, error) {
	v := &Validator{schemas: map[string]*jsonschema.Schema{}}
	for t, s := range schemas {
		if err := v.Register(t, s); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Register compiles schema and uses it for events of eventType.
func (v *Validator) Register(eventType string, schema []byte) error {
	if err := bus.ValidateType(eventType); err != nil {
		return err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return fmt.Errorf("schema for %s is not JSON: %w", eventType, err)
	}
	url := "eventbus:///" + eventType + ".json"
	c := jsonschema.NewCompiler()
	if err := c.AddResource(url, doc); err != nil {
		return fmt.Errorf("schema for %s: %w", eventType, err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		return fmt.Errorf("schema for %s does not compile: %w", eventType, err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.schemas == nil {
		v.schemas = map[string]*jsonschema.Schema{}
	}
	v.schemas[eventType] = sch
	return nil
}

// Validate checks msg as a received event. The error wraps ErrInvalidEvent.
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
	return v.ValidateData(md.Get(bus.AttrType), msg.Payload)
}

// ValidateData checks data against the schema registered for eventType (if
// any). The error wraps ErrInvalidEvent and says where the data is wrong.
func (v *Validator) ValidateData(eventType string, data []byte) error {
	v.mu.RLock()
	sch := v.schemas[eventType]
	v.mu.RUnlock()
	if sch == nil {
		return nil
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%w: %s data is not JSON: %v", ErrInvalidEvent, eventType, err)
	}
	if err := sch.Validate(inst); err != nil {
		return fmt.Errorf("%w: %s data does not match its schema: %v", ErrInvalidEvent, eventType, err)
	}
	return nil
}

// Middleware implements message.HandlerMiddleware: an invalid event fails
// permanently without reaching the handler.
func (v *Validator) Middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if err := v.Validate(msg); err != nil {
			return nil, Permanent(err)
		}
		return h(msg)
	}
}

// Publisher returns pub wrapped so that events whose data fails their
// type's schema are rejected before anything is written.
func (v *Validator) Publisher(pub message.Publisher) message.Publisher {
	return validatingPublisher{Publisher: pub, v: v}
}

type validatingPublisher struct {
	message.Publisher
	v *Validator
}

func (p validatingPublisher) Publish(topic string, msgs ...*message.Message) error {
	for i, m := range msgs {
		if err := p.v.ValidateData(topic, m.Payload); err != nil {
			return fmt.Errorf("event %d of %d (id %s) not published, nothing written: %w", i+1, len(msgs), m.UUID, err)
		}
	}
	return p.Publisher.Publish(topic, msgs...)
}
