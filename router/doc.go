// Package router builds a Watermill router with the event bus's default
// middleware stack, and registers handlers by event type or pattern, raw or
// typed (bus.Event[T]). Every handler is its own consumer group
// ("<service>.<handler>"), so handlers are isolated: one failing handler never
// delays or repeats another's work; instances of one service share the group
// and split the load.
//
// The stack around each handler, outermost first:
//
//	stats → dead letter → max deliveries → validation → retry →
//	tracing (a span per attempt) → attempt stats → hard timeout → recoverer → filter → handler
//
// Handlers may be added and removed while the router runs. AddHandler,
// RemoveHandler, Stats and Close are safe for concurrent use; a handler runs
// concurrently with other handlers, and with itself when its Concurrency is
// above 1.
package router
