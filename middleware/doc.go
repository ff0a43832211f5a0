// Package middleware holds the event bus's Watermill handler middleware:
// validation (with the JSON Schema version an event names in dataschema),
// trace and correlation
// propagation, hard timeouts, retry with backoff, dead-lettering and stats.
// Each is an ordinary message.HandlerMiddleware usable alone in any Watermill
// router; package router composes them into the default stack.
//
// Where Watermill already has the piece (Retry, PoisonQueue, Recoverer) these
// wrap it rather than rewrite it: Retry adds permanent errors and attempt
// counting; DeadLetter wraps PoisonQueue, outside Retry (Watermill issues
// #580/#645: a poison queue inside a retry makes the retry never happen).
//
// Concurrency: every middleware and the Stats collector are safe for use by
// many handlers and many concurrent messages at once.
package middleware
