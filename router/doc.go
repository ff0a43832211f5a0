// Package router builds a Watermill router with the event bus's default
// middleware stack, and registers handlers by event type or pattern, raw or
// typed (bus.Event[T]). Every handler is its own consumer group
// ("<service>.<handler>"), so handlers are isolated: one failing handler never
// delays or repeats another's work; instances of one service share the group
// and split the load.
//
// The stack around each handler, outermost first, one middleware per
// concern in the order an event needs it:
//
//	stats → dead letter → max deliveries → validation → filter → dedup →
//	retry → tracing (a span per attempt) → attempt stats → hard timeout and
//	panic recovery → Config.Middleware → handler
//
// Stats is outermost to see the final outcome; the dead-letter decision is
// taken once the attempts are over; events that must never reach the
// handler (too many deliveries, invalid) fail permanently before any work;
// the filter (WithFilter) sees only valid events and acks the ones it skips
// at once; dedup (WithDedup) is checked once per delivery, outside the
// retries; the timeout and the recoverer wrap the handler only. See
// docs/architecture.md, "The router stack".
//
// Handlers may be added and removed while the router runs. AddHandler,
// RemoveHandler, Stats and Close are safe for concurrent use; a handler runs
// concurrently with other handlers, and with itself when its Concurrency is
// above 1.
package router
