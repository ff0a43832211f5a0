package bus

import (
	"errors"

	"github.com/redis/go-redis/v9"
)

// Sentinel errors. Every error the bus returns for bad input wraps one of
// these, so callers match with errors.Is, never by string.
var (
	// ErrInvalidType is returned for an event type that is not dot-separated
	// tokens of [a-z0-9_-], 1–255 bytes.
	ErrInvalidType = errors.New("invalid event type")
	// ErrInvalidPattern is returned for a subscription pattern that is not a
	// valid type with "*" tokens and at most one trailing ">" token.
	ErrInvalidPattern = errors.New("invalid pattern")
	// ErrEventTooLarge is returned when an event (data plus attributes) is
	// larger than Config.MaxEventSize.
	ErrEventTooLarge = errors.New("event too large")
	// ErrInvalidData is returned when the data does not match the declared
	// datacontenttype (for example invalid JSON under application/json).
	ErrInvalidData = errors.New("invalid event data")
	// ErrInvalidAttribute is returned when an attribute is missing, malformed
	// or reserved.
	ErrInvalidAttribute = errors.New("invalid event attribute")
	// ErrClosed is returned by calls on a closed publisher, subscriber or bus.
	ErrClosed = errors.New("eventbus: closed")
	// ErrMalformed marks an entry that could not be decoded into an event.
	// The subscriber still delivers it (as a message for which IsMalformed
	// is true) so that the router can dead-letter it; it never stops consuming.
	ErrMalformed = errors.New("malformed event")
	// ErrDecode is returned by Decode when the event data cannot be decoded
	// into the requested Go type.
	ErrDecode = errors.New("cannot decode event data")
	// ErrInvalidConfig wraps every configuration problem reported by
	// Validate, here and in every package of the module (router, middleware,
	// gateway, observe, outbox, photo): errors.Is(err, bus.ErrInvalidConfig)
	// tells a bad config from a failure, whichever package refused it.
	ErrInvalidConfig = errors.New("invalid config")
)

// IsNoSuchKey reports whether err is Redis's "ERR no such key": the answer
// of XINFO STREAM or XINFO GROUPS for a stream that does not exist (yet).
// It is the one such check of the module (the gateway's push stream, the
// observer's and the CLI's stats, group resets).
func IsNoSuchKey(err error) bool { return redis.HasErrorPrefix(err, "no such key") }
