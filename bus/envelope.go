package bus

import (
	"encoding/json"
	"fmt"

	"strings"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
)

// CloudEvents 1.0 attributes (and the extensions the bus uses), stored as
// Watermill metadata keys and as plain Redis Stream fields of the same name.
// See docs/wire-format.md.
const (
	AttrID              = "id"
	AttrType            = "type"
	AttrSource          = "source"
	AttrSpecVersion     = "specversion"
	AttrTime            = "time"
	AttrDataContentType = "datacontenttype"
	AttrDataSchema      = "dataschema"
	AttrSubject         = "subject"
	AttrTraceParent     = "traceparent"
	AttrTraceState      = "tracestate"
	AttrCorrelationID   = "correlationid"
	AttrCausationID     = "causationid"
	AttrRoom            = "room"
	AttrUser            = "user"
	AttrBroadcast       = "broadcast"

	// FieldData is the stream field that holds the event data (the payload).
	FieldData = "data"
)

// SpecVersion is the CloudEvents spec version the bus writes.
const SpecVersion = "1.0"

// Metadata keys the subscriber sets on every delivered message. They start
// with "_eventbus_" and are never written to a stream.
const (
	// MetaStreamID is the Redis Stream entry id, e.g. "1700000000000-0".
	MetaStreamID = "_eventbus_stream_id"
	// MetaTopic is the event type the entry was read from (its stream, without
	// the prefix). It is set even when the entry is malformed.
	MetaTopic = "_eventbus_topic"
	// MetaDelivery is how many times Redis has delivered the entry to this
	// consumer group ("1" the first time). It survives restarts, since it is
	// the stream's own delivery counter.
	MetaDelivery = "_eventbus_delivery"
	// MetaMalformed is set, with the reason, on a message decoded from an
	// entry that is not a valid event.
	MetaMalformed = "_eventbus_malformed"
	// MetaGroup is the consumer group the message was delivered to.
	MetaGroup = "_eventbus_group"

	internalPrefix = "_eventbus_"
)

// requiredAttrs are the attributes without which an entry is malformed
// (the CloudEvents required attributes).
var requiredAttrs = []string{AttrID, AttrSource, AttrSpecVersion, AttrType}

// Marshaller stores a Watermill message as an event: every metadata key is a
// stream field of the same name and the payload is the "data" field. It
// implements watermill-redisstream's Marshaller and Unmarshaller, so a plain
// watermill-redisstream publisher or subscriber configured with it speaks the
// bus's wire format.
//
// Unmarshal never returns an error: an entry that is not a valid event (say a
// hand-made `XADD topic * garbage 1`) becomes a message for which IsMalformed
// is true, because watermill-redisstream ends a whole subscription when its
// Unmarshaller fails. Entries written by watermill-redisstream's default
// marshaller (_watermill_message_uuid, msgpack metadata, payload) are decoded
// with that marshaller, so existing Watermill streams can move onto the bus.
type Marshaller struct{}

var _ redisstream.MarshallerUnmarshaller = Marshaller{}

// Marshal implements redisstream.Marshaller. It writes the message as it is:
// enrichment and validation are the Publisher's job. Metadata keys starting
// with "_eventbus_" are not written.
func (Marshaller) Marshal(_ string, msg *message.Message) (map[string]any, error) {
	values := make(map[string]any, len(msg.Metadata)+2)
	for k, v := range msg.Metadata {
		if strings.HasPrefix(k, internalPrefix) {
			continue
		}
		if k == FieldData || k == redisUUIDKey {
			return nil, fmt.Errorf("%w: metadata key %q is reserved", ErrInvalidAttribute, k)
		}
		values[k] = v
	}
	values[AttrID] = msg.UUID
	values[FieldData] = []byte(msg.Payload)
	return values, nil
}

// Unmarshal implements redisstream.Unmarshaller. See Marshaller.
func (Marshaller) Unmarshal(values map[string]any) (*message.Message, error) {
	if _, ok := values[redisstream.UUIDHeaderKey]; ok {
		// watermill-redisstream's unmarshaller type-asserts its fields to
		// string and would panic on anything else.
		for k, v := range values {
			if _, ok := v.(string); !ok {
				return malformed(values, fmt.Sprintf("watermill-redisstream entry: field %q is not a string", k)), nil
			}
		}
		msg, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(values)
		if err != nil {
			return malformed(values, "watermill-redisstream entry: "+err.Error()), nil
		}
		return msg, nil
	}
	md := make(message.Metadata, len(values)+4) // room for the subscriber's own keys
	var data string
	for k, v := range values {
		s, ok := v.(string)
		if !ok {
			return malformed(values, fmt.Sprintf("field %q is not a string", k)), nil
		}
		if k == FieldData {
			data = s
			continue
		}
		if strings.HasPrefix(k, internalPrefix) {
			continue
		}
		md[k] = s
	}
	var missing []string
	for _, a := range requiredAttrs {
		if md[a] == "" {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		return malformed(values, "missing required attribute(s) "+strings.Join(missing, ", ")), nil
	}
	if err := ValidateType(md[AttrType]); err != nil {
		return malformed(values, err.Error()), nil
	}
	msg := message.NewMessage(md[AttrID], []byte(data))
	msg.Metadata = md
	return msg, nil
}

// malformed builds the message that stands for an undecodable entry: its
// payload is the whole entry as a JSON object, so the dead-letter stream keeps
// everything that was there.
func malformed(values map[string]any, reason string) *message.Message {
	raw := make(map[string]string, len(values))
	for k, v := range values {
		raw[k] = fmt.Sprint(v)
	}
	payload, _ := json.Marshal(raw) // map[string]string always marshals
	id := raw[AttrID]
	if id == "" {
		id = watermill.NewUUID()
	}
	msg := message.NewMessage(id, payload)
	msg.Metadata.Set(MetaMalformed, reason)
	return msg
}

// IsMalformed reports whether msg was decoded from an entry that is not a
// valid event, and why.
func IsMalformed(msg *message.Message) (reason string, ok bool) {
	reason = msg.Metadata.Get(MetaMalformed)
	return reason, reason != ""
}

// MalformedError returns an error wrapping ErrMalformed with the reason, or
// nil when msg is a valid event.
func MalformedError(msg *message.Message) error {
	if reason, ok := IsMalformed(msg); ok {
		return fmt.Errorf("%w: %s", ErrMalformed, reason)
	}
	return nil
}

// Unmarshaller decodes a stream entry into a message. It is
// watermill-redisstream's interface, so its unmarshallers plug in as they are.
type Unmarshaller = redisstream.Unmarshaller

const redisUUIDKey = redisstream.UUIDHeaderKey
