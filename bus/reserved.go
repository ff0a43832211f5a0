package bus

import (
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
)

// ErrReservedAttribute is returned (wrapped) for an attribute name the bus
// uses internally, which no caller may set: by WithAttribute (through
// NewMessage, Publish and the Publisher) and by the gateway's ingress (400,
// naming the field). It wraps ErrInvalidAttribute.
var ErrReservedAttribute = fmt.Errorf("%w: reserved name", ErrInvalidAttribute)

// reservedNames are the exact names the bus uses internally, with why.
var reservedNames = map[string]string{
	AttrRedriveGroup: "it addresses a redriven event to one consumer group, and is set by DeadLetterQueue.Redrive only",
	FieldData:        "it is the stream field that holds the data",
	ExtDeliverAt:     "it is the ingress extension for delayed delivery: use bus.WithDeliverAt or bus.WithDelay",
}

// reservedPrefixes are the name prefixes the bus uses internally, with why.
var reservedPrefixes = []struct{ prefix, why string }{
	{"_", "names starting with '_' are the bus's and Watermill's internal metadata (" + internalPrefix + "*, _watermill_*), never written as attributes"},
	{"dlq_", "names starting with 'dlq_' are the dead-letter stream's own fields"},
}

// ReservedAttributes returns every exact attribute name the bus uses
// internally (the names under the reserved prefixes "_" and "dlq_" that it
// sets); CheckAttributeName refuses these and every other name under those
// prefixes. See docs/wire-format.md.
func ReservedAttributes() []string {
	return []string{
		AttrRedriveGroup, FieldData, ExtDeliverAt, redisUUIDKey,
		MetaStreamID, MetaTopic, MetaDelivery, MetaMalformed, MetaGroup, MetaDeliverAt, MetaDuplicate,
		DLQFieldReason, DLQFieldHandler, DLQFieldGroup, DLQFieldTopic, DLQFieldAttempts,
		DLQFieldDelivery, DLQFieldTime, DLQFieldStreamID, "dlq_malformed",
	}
}

// CheckAttributeName returns an error wrapping ErrReservedAttribute, saying
// why, when name is reserved (see ReservedAttributes), and nil otherwise.
// The gateway's ingress allows ExtDeliverAt, which it turns into a due time.
func CheckAttributeName(name string) error {
	if why, ok := reservedNames[name]; ok {
		return fmt.Errorf("%w: attribute %q cannot be set: %s", ErrReservedAttribute, name, why)
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(name, p.prefix) {
			return fmt.Errorf("%w: attribute %q cannot be set: %s", ErrReservedAttribute, name, p.why)
		}
	}
	return nil
}

// metaOptionError records on a message the first reserved attribute an
// Option tried to set; NewMessage and the Publisher refuse such a message.
const metaOptionError = internalPrefix + "option_error"

// setMeta is the Option that sets any metadata key, reserved ones included:
// for the bus's own options (WithDeliverAt).
func setMeta(key, value string) Option {
	return func(m *message.Message) { m.Metadata.Set(key, value) }
}

// optionError returns the error of a reserved attribute set with
// WithAttribute on msg, if any.
func optionError(msg *message.Message) error {
	name, ok := msg.Metadata[metaOptionError]
	if !ok {
		return nil
	}
	return CheckAttributeName(name)
}
