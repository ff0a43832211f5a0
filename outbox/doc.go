// Package outbox is the transactional outbox of the bus on PostgreSQL: a
// service writes its own rows and the events that announce them in one
// database transaction, and a Forwarder moves the committed events onto the
// bus. An event exists on the bus if and only if its transaction committed.
//
// It is built from Watermill's pieces: the writer side is a watermill-sql v4
// Publisher bound to the caller's *sql.Tx behind components/forwarder's
// enveloping Publisher; the Forwarder is components/forwarder reading the
// outbox table with watermill-sql's queue schema (rows deleted when
// forwarded) and publishing to the bus's Publisher.
//
// # The one publish path
//
// Outbox.Publish runs, before the insert, what a direct publish runs
// (bus.Publisher.Prepare): the bus Publisher's enrichment and validation,
// the JSON Schema of the type from the bus's schema registry, and trace
// context and correlation from ctx. An invalid event is an
// error inside the caller's transaction, which the caller then rolls back:
// neither its row nor the event is written. The id, type, every attribute
// (subject, room, user, broadcast, traceparent, correlationid, ...) and the
// data travel in the row unchanged, so the event on the stream is the event
// that was committed.
//
// # Guarantee
//
// From commit to stream: at least once. The Forwarder deletes a row in the
// transaction that read it, after the bus accepted the event; a Forwarder
// killed in between leaves the row, and the next one publishes the event
// again with the same id, which the bus Publisher's deduplication window
// drops. A database or Redis that goes away only delays forwarding. See
// docs/outbox.md.
//
// # Concurrency
//
// Outbox is safe for use from many goroutines; Publish uses only the
// transaction it is given. A Forwarder runs one reader; several Forwarders on
// one table are safe (rows are locked while forwarded) but take turns.
package outbox
