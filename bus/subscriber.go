package bus

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// Subscriber consumes events as one consumer group. It implements
// message.Subscriber: the topic passed to Subscribe is an event type or a
// pattern ("photo.*", "photo.>"), and a pattern subscription follows the type
// registry, so streams that appear later are consumed from their first entry.
//
// Each Subscribe call holds one reader goroutine that does all of the
// subscription's Redis I/O (reads, acks, claims) on one connection at a time,
// whatever the number of streams: one XREADGROUP names every matching stream
// (on a cluster, every stream of one slot). Entries are read in batches and
// acked in batches; see docs/architecture.md for why the bus does not use
// watermill-redisstream's subscriber.
//
// Subscribe and Close are safe for concurrent use.
type Subscriber struct {
	cfg     SubscriberConfig
	bus     Config
	client  redis.UniversalClient
	logger  watermill.LoggerAdapter
	watcher *registryWatcher
	onClose func(*Subscriber) // lets the Bus forget a closed subscriber

	closing chan struct{}
	mu      sync.Mutex
	closed  bool
	wg      sync.WaitGroup
	open    atomic.Int64 // subscriptions whose channel is not closed yet
}

var _ message.Subscriber = (*Subscriber)(nil)

func newSubscriber(cfg SubscriberConfig, b Config, client redis.UniversalClient, w *registryWatcher, logger watermill.LoggerAdapter) (*Subscriber, error) {
	cfg.setDefaults(b)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Subscriber{
		cfg:     cfg,
		bus:     b,
		client:  client,
		logger:  logger.With(watermill.LogFields{"consumer_group": cfg.ConsumerGroup, "consumer": cfg.Consumer}),
		watcher: w,
		closing: make(chan struct{}),
	}, nil
}

// Config returns the subscriber's configuration, defaults applied.
func (s *Subscriber) Config() SubscriberConfig { return s.cfg }

// Subscribe starts consuming topic (an event type or a pattern) as the
// subscriber's consumer group. It creates the group on every matching stream
// before it returns, so events published after Subscribe returns are never
// missed. The channel is closed when ctx is done or the subscriber closes;
// each message must be acked or nacked. A nacked message is delivered again
// after NackDelay, and Redis counts the delivery (MetaDelivery).
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	pattern := IsPattern(topic)
	if pattern {
		if err := ValidatePattern(topic); err != nil {
			return nil, err
		}
	} else if err := ValidateType(topic); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	sub := newSubscription(s, ctx, topic, pattern)
	if err := sub.start(ctx); err != nil {
		sub.abort()
		return nil, err
	}
	s.open.Add(1)
	s.wg.Add(2)
	go func() { defer s.wg.Done(); sub.readLoop() }()
	go func() { defer s.wg.Done(); sub.dispatchLoop() }()
	return sub.out, nil
}

// Subscriptions returns how many of this subscriber's subscriptions are
// open: Subscribe returned their channel and it is not closed yet (it closes
// when the subscription's context ends or the subscriber closes, once its
// reader has stopped). A router handler whose subscriber has none is not
// consuming.
func (s *Subscriber) Subscriptions() int { return int(s.open.Load()) }

// Close stops every subscription: no new messages are delivered, in-flight
// ones get up to CloseTimeout to be acked (their acks are written), and what
// is left stays pending for another consumer of the group. It never closes
// the Redis client and is safe to call more than once.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	// Every call waits, so that a caller that closes the Redis client after
	// Close returns (Bus.Close does) never cuts off another call's drain.
	s.wg.Wait()
	if s.onClose != nil {
		s.onClose(s)
	}
	return nil
}

func defaultConsumerName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), watermill.NewShortUUID()[:8])
}

// sleepCtx waits d unless stop closes first; it reports whether it waited.
func sleepCtx(stop <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}
