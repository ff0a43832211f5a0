package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Event is a decoded event with typed data T.
type Event[T any] struct {
	ID            string
	Type          string
	Source        string
	Time          time.Time
	Subject       string
	Room          string
	User          string
	Broadcast     bool
	TraceParent   string
	CorrelationID string
	CausationID   string
	Data          T
	// Message is the underlying Watermill message (metadata, ack, context).
	Message *message.Message
}

// Option sets an attribute of an event built by NewMessage or Publish.
type Option func(*message.Message)

// WithRoom addresses the event to a room (browser delivery). An empty room
// is refused by Publish (ErrInvalidAttribute), as are an empty user and
// subject: leave the option out instead.
func WithRoom(room string) Option { return WithAttribute(AttrRoom, room) }

// WithUser addresses the event to one user (browser delivery). Publish
// refuses an empty user (ErrInvalidAttribute) rather than write "user=".
func WithUser(user string) Option { return WithAttribute(AttrUser, user) }

// WithBroadcast addresses the event to every connected browser.
func WithBroadcast() Option { return WithAttribute(AttrBroadcast, "true") }

// WithSubject sets the CloudEvents subject, e.g. the photo id. Publish
// refuses an empty subject (ErrInvalidAttribute).
func WithSubject(subject string) Option { return WithAttribute(AttrSubject, subject) }

// WithCorrelationID sets the correlation id (by default the trace middleware
// carries it over from the event being handled).
func WithCorrelationID(id string) Option { return WithAttribute(AttrCorrelationID, id) }

// WithID sets the event id (default: a new UUID). Use it to make a publish
// idempotent for consumers that deduplicate by id.
func WithID(id string) Option { return func(m *message.Message) { m.UUID = id } }

// WithAttribute sets any attribute (a CloudEvents extension, for instance)
// except the reserved ones the bus uses internally (see
// CheckAttributeName): a message given a reserved one is refused by
// NewMessage and by the Publisher with an error wrapping
// ErrReservedAttribute that names it, and the attribute is not set.
func WithAttribute(key, value string) Option {
	if CheckAttributeName(key) != nil {
		return func(m *message.Message) {
			if _, ok := m.Metadata[metaOptionError]; !ok {
				m.Metadata.Set(metaOptionError, key)
			}
		}
	}
	return func(m *message.Message) { m.Metadata.Set(key, value) }
}

// NewMessage encodes data as JSON into a new message with the options
// applied. The publisher adds the remaining attributes when it is published.
func NewMessage[T any](ctx context.Context, data T, opts ...Option) (*message.Message, error) {
	payload, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("%w: encode %T as JSON: %w", ErrInvalidData, data, err)
	}
	msg := message.NewMessage(watermill.NewUUID(), payload)
	msg.Metadata.Set(AttrDataContentType, DefaultContentType)
	for _, o := range opts {
		o(msg)
	}
	if err := optionError(msg); err != nil {
		return nil, err
	}
	if ctx != nil {
		msg.SetContext(ctx)
	}
	return msg, nil
}

// Publish encodes data as JSON and publishes it as an event of type typ
// through pub (the bus's Publisher, or any message.Publisher such as a
// router's decorated one). It returns the event id.
func Publish[T any](ctx context.Context, pub message.Publisher, typ string, data T, opts ...Option) (string, error) {
	msg, err := NewMessage(ctx, data, opts...)
	if err != nil {
		return "", err
	}
	if err := pub.Publish(typ, msg); err != nil {
		return "", err
	}
	return msg.UUID, nil
}

// Decode returns msg as an Event[T], decoding its JSON data into T. A
// malformed message or data that does not decode into T gives an error
// wrapping ErrMalformed or ErrDecode.
func Decode[T any](msg *message.Message) (Event[T], error) {
	ev := Event[T]{
		ID:            msg.UUID,
		Type:          msg.Metadata.Get(AttrType),
		Source:        msg.Metadata.Get(AttrSource),
		Subject:       msg.Metadata.Get(AttrSubject),
		Room:          msg.Metadata.Get(AttrRoom),
		User:          msg.Metadata.Get(AttrUser),
		TraceParent:   msg.Metadata.Get(AttrTraceParent),
		CorrelationID: msg.Metadata.Get(AttrCorrelationID),
		CausationID:   msg.Metadata.Get(AttrCausationID),
		Message:       msg,
	}
	if err := MalformedError(msg); err != nil {
		return ev, err
	}
	ev.Broadcast, _ = strconv.ParseBool(msg.Metadata.Get(AttrBroadcast))
	if t := msg.Metadata.Get(AttrTime); t != "" {
		ts, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return ev, fmt.Errorf("%w: event %s: time %q is not RFC 3339", ErrDecode, msg.UUID, t)
		}
		ev.Time = ts
	}
	if len(msg.Payload) > 0 {
		if err := json.Unmarshal(msg.Payload, &ev.Data); err != nil {
			return ev, fmt.Errorf("%w: event %s (%s) into %T: %w", ErrDecode, msg.UUID, ev.Type, ev.Data, err)
		}
	}
	return ev, nil
}
