// Package bus is the core of eventbus: typed domain events published to and
// consumed from Redis Streams, as Watermill Publisher and Subscriber.
//
// One event is one stream entry whose fields are CloudEvents 1.0 attributes
// (id, type, source, specversion, time, datacontenttype, subject,
// traceparent, correlationid, room, user, broadcast, ...) plus "data"; see
// docs/wire-format.md. The stream of event type T is Config.StreamPrefix + T.
//
// # Publishing
//
// Publisher is the one publish path: the router, the gateway's ingress, the
// CLI and dead-letter redrive all publish through it. It validates (type
// name, size, JSON data, the type's JSON Schema from the SchemaRegistry) and
// enriches (id, source, time, specversion, dataschema; correlationid,
// causationid and trace context from the message's context) every event
// before writing it; a call with several events is one pipeline and writes
// nothing if any event is invalid. See docs/schemas.md.
//
// # Subscribing
//
// A Subscriber is one consumer group. Subscribe takes an event type or a
// NATS-style pattern ("photo.*" one token, "photo.>" one or more). Delivery
// is at least once: an entry is acked only after the handler acks it; one
// that a crashed consumer left pending is claimed by another after
// ClaimMinIdle. A nacked message is delivered again and Redis counts the
// delivery (MetaDelivery). An entry that is not a valid event is delivered as
// a message for which IsMalformed is true; it never stops consumption.
//
// # Concurrency
//
// Bus, Publisher, Subscriber and DeadLetterQueue are safe for use from many
// goroutines. The goroutines a subscription (one Subscribe call) runs, for
// its whole life: the reader (all of its Redis I/O: reads, acks, claims,
// resyncs), the keepalive (XCLAIM JUSTID of what it holds, every
// ClaimMinIdle/3), a stopper that waits for the context, Close or the
// dispatcher's end, the dispatcher (decodes and delivers, in stream order),
// and up to Concurrency awaiters (each waits for one delivered message's ack
// or nack; started when none is idle, kept until the end). A Subscriber adds
// one heartbeat goroutine for all its subscriptions. None is started per
// event. Messages are delivered one at a time, in stream order, unless
// SubscriberConfig.Concurrency is above 1. Close may be called at any time and more than once; the bus never
// closes a Redis client it was given.
//
// # Logging
//
// Every constructor takes a watermill.LoggerAdapter; nil logs nothing. To log
// through log/slog: watermill.NewSlogLogger(slog.Default()).
package bus
