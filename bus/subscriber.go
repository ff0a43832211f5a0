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
	open    atomic.Int64  // subscriptions whose channel is not closed yet
	started atomic.Int64  // of those, the ones connected: their groups exist
	beating bool          // the heartbeat goroutine runs (under mu)
	hbStop  chan struct{} // closed by Close once every subscription has drained
	hbDone  chan struct{} // closed when the heartbeat goroutine has ended
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
		hbStop:  make(chan struct{}),
		hbDone:  make(chan struct{}),
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
//
// When Redis cannot be reached (IsTransient), Subscribe still returns the
// channel: the subscription waits for Redis, retrying with backoff and
// jitter (50 ms doubling to 1 s), creates its groups once Redis answers and
// consumes from then on; it is not counted by Subscriptions until then.
// With StartFrom "0" (the default) nothing published meanwhile is missed.
// Any other error (credentials refused, an ACL denial, a TLS failure) is
// returned at once, and the same errors met while waiting end the
// subscription with an error log.
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
		if !IsTransient(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("subscribe %s as %s: %w", topic, s.cfg.ConsumerGroup, err)
		}
		s.logger.Error("Redis unreachable; the subscription waits for it", err, watermill.LogFields{"topic": topic})
	} else {
		sub.started = true
		s.started.Add(1)
	}
	if s.cfg.HeartbeatTTL > 0 && !s.beating {
		// Until the last in-flight message is drained at Close: the key
		// goes only then, so no one claims what a handler still works on.
		s.beating = true
		go func() { defer close(s.hbDone); s.heartbeat(s.hbStop) }()
	}
	s.open.Add(1)
	s.wg.Add(2)
	go func() { defer s.wg.Done(); sub.readLoop() }()
	go func() { defer s.wg.Done(); sub.dispatchLoop() }()
	return sub.out, nil
}

// Subscriptions returns how many of this subscriber's subscriptions are
// consuming: Subscribe returned their channel, it is not closed yet (it
// closes when the subscription's context ends or the subscriber closes, once
// its reader has stopped), and the subscription has reached Redis (its
// groups exist; one that waits for Redis at start is not counted until
// then). A router handler whose subscriber has none is not consuming.
func (s *Subscriber) Subscriptions() int { return int(s.started.Load()) }

// Close stops every subscription: no new messages are delivered, in-flight
// ones get up to CloseTimeout to be acked (their acks are written), and what
// is left stays pending for another consumer of the group. It never closes
// the Redis client and is safe to call more than once.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	first := !s.closed
	if first {
		s.closed = true
		close(s.closing)
	}
	beating := s.beating
	s.mu.Unlock()
	// Every call waits, so that a caller that closes the Redis client after
	// Close returns (Bus.Close does) never cuts off another call's drain.
	s.wg.Wait()
	if beating {
		if first {
			close(s.hbStop)
		}
		<-s.hbDone
	}
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
