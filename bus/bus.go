package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"
)

// Bus is one service's connection to the event bus: the shared configuration,
// Redis client, publisher and type-registry watcher from which subscribers are
// made. It is safe for concurrent use.
type Bus struct {
	cfg       Config
	client    redis.UniversalClient
	ownClient bool
	logger    watermill.LoggerAdapter
	pub       *Publisher
	schemas   *SchemaRegistry
	watcher   *registryWatcher
	mover     *mover    // nil when Config.SchedulePollInterval is -1
	trimmer   *periodic // nil when Retention.TrimInterval is -1
	discovery *periodic // nil when Config.DiscoveryInterval is -1
	dlqFailed *failedReasons

	mu     sync.Mutex
	subs   []*Subscriber
	closed bool
}

// New validates cfg and returns a Bus. It does not contact Redis; use Ping to
// check the connection. A nil logger logs nothing (watermill.NopLogger); use
// watermill.NewSlogLogger to log through log/slog.
func New(cfg Config, logger watermill.LoggerAdapter) (*Bus, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	b := &Bus{cfg: cfg, client: cfg.Client, logger: logger, dlqFailed: newFailedReasons()}
	if b.client == nil {
		c, err := NewRedisClient(cfg.RedisURL, cfg.TLSConfig)
		if err != nil {
			return nil, err
		}
		b.client = c
		b.ownClient = true
	}
	b.schemas = newSchemaRegistry(cfg, b.client, logger)
	b.pub = newPublisher(cfg, b.client, logger, b.schemas)
	b.watcher = newRegistryWatcher(b.client, cfg.RegistryKey(), logger)
	if cfg.SchedulePollInterval > 0 {
		b.mover = startMover(b)
	}
	if cfg.Retention.TrimInterval > 0 {
		b.trimmer = startTrimmer(b)
	}
	if cfg.DiscoveryInterval > 0 {
		b.discovery = startDiscovery(b)
	}
	return b, nil
}

// Config returns the bus configuration, defaults applied.
func (b *Bus) Config() Config { return b.cfg }

// Client returns the Redis client the bus uses.
func (b *Bus) Client() redis.UniversalClient { return b.client }

// Logger returns the bus's logger.
func (b *Bus) Logger() watermill.LoggerAdapter { return b.logger }

// Publisher returns the bus's publisher (a message.Publisher): the one path
// into the bus. The router's Publisher, the gateway's ingress, the CLI and
// dead-letter redrive all publish through it.
func (b *Bus) Publisher() *Publisher { return b.pub }

// Ping checks that Redis answers.
func (b *Bus) Ping(ctx context.Context) error {
	if err := b.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis unreachable: %w", err)
	}
	return nil
}

// NewSubscriber returns a subscriber for one consumer group (cfg.ConsumerGroup,
// by default the service name). The bus closes it in Close.
func (b *Bus) NewSubscriber(cfg SubscriberConfig) (*Subscriber, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	s, err := newSubscriber(cfg, b.cfg, b.client, b.watcher, b.logger)
	if err != nil {
		return nil, err
	}
	s.onClose = b.forget
	b.subs = append(b.subs, s)
	return s, nil
}

// forget drops a closed subscriber, so that a long-running router that adds
// and removes handlers does not keep every subscriber it ever made.
func (b *Bus) forget(s *Subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, x := range b.subs {
		if x == s {
			b.subs = append(b.subs[:i], b.subs[i+1:]...)
			return
		}
	}
}

// Close closes every subscriber made from the bus, concurrently (each drains
// its in-flight messages, see Subscriber.Close), then the publisher and the
// registry watcher.
// It closes the Redis client only if the bus opened it from RedisURL. Safe to
// call more than once.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	subs := slices.Clone(b.subs) // each Close calls forget, which edits b.subs
	b.mu.Unlock()

	if b.mover != nil {
		b.mover.stop()
	}
	for _, p := range []*periodic{b.trimmer, b.discovery} {
		if p != nil {
			p.stop()
		}
	}
	// All at once: each drains its in-flight messages and waits up to one
	// BlockTime for its reader, so 60 subscribers close in about the time
	// of the slowest one rather than the sum.
	errs := make([]error, len(subs), len(subs)+3)
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Go(func() { errs[i] = s.Close() })
	}
	wg.Wait()
	errs = append(errs, b.pub.Close())
	b.watcher.close()
	b.schemas.cache.close()
	if b.ownClient {
		errs = append(errs, b.client.Close())
	}
	return errors.Join(errs...)
}
