package main

import "context"

// A system is one messaging stack under test. Topics are logical names
// ([a-z0-9-]); each system maps them to its own stream, subject or exchange
// under the run's prefix.
type system interface {
	// Name is the system's column in the table.
	Name() string
	// Prepare makes topic and the consumer groups exist, so that events
	// published from now on are kept for each group (RabbitMQ drops what a
	// fanout exchange has no bound queue for).
	Prepare(ctx context.Context, topic string, groups []string) error
	// Publisher returns a publish function for one goroutine and its close.
	Publisher(ctx context.Context, topic string) (publish func(ctx context.Context, data []byte) error, closeFn func() error, err error)
	// Subscribe starts one consumer per group, each calling on(i, data) for
	// every event of group i, and returns once they consume. stop stops them.
	Subscribe(ctx context.Context, topic string, groups []string, on func(group int, data []byte)) (stop func() error, err error)
	// Cleanup deletes what the run created for topic.
	Cleanup(ctx context.Context, topic string, groups []string) error
	// Close releases the system's shared connections.
	Close() error
}
