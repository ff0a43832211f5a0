// Package middleware holds the event bus's Watermill handler middleware:
// validation (with the JSON Schema version an event names in dataschema),
// trace and correlation
// propagation, hard timeouts, retry with backoff, dead-lettering and stats.
// Each is an ordinary message.HandlerMiddleware usable alone in any Watermill
// router; package router composes them into the default stack.
//
// The handlers run on Watermill's message.Router as it is. Where Watermill's
// own middleware does not fit, the piece is owned here and says why: Retry is a loop of its own (Watermill's would cost every
// event its backoff machinery), DeadLetter writes to the bus's dead-letter
// queue itself (Watermill's PoisonQueue publishes metadata the entry must not
// carry), Timeout fails at the deadline even when the handler ignores its
// context (Watermill's only cancels it) and recovers the handler's panics.
// DeadLetter goes outside Retry (Watermill issues #580/#645: a poison queue
// inside a retry makes the retry never happen).
//
// Concurrency: every middleware and the Stats collector are safe for use by
// many handlers and many concurrent messages at once.
package middleware
