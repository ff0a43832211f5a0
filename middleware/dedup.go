package middleware

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
)

// DefaultHandledWindow is how long RedisHandledStore remembers a handled
// event when its window is zero: longer than any redelivery after a crash
// (a claim after SubscriberConfig.ClaimMinIdle, or the restart of the
// consumer) is expected to take.
const DefaultHandledWindow = time.Hour

// HandledStore remembers which events a handler has handled. Keys are made
// by Dedup (consumer group, event type and id). Its methods must be safe for
// concurrent use.
type HandledStore interface {
	// IsHandled reports whether key was marked within the store's window.
	IsHandled(ctx context.Context, key string) (bool, error)
	// MarkHandled marks key; the mark expires after the store's window.
	MarkHandled(ctx context.Context, key string) error
}

// RedisHandledStore is a HandledStore in Redis: one key per handled event,
// "<prefix>$handled:<key>" (the '$' keeps it apart from every stream key),
// expiring after the window. Each call is one single-key command, so it works
// on Redis Cluster. It costs one key per handled event for the window (about
// 100 bytes each; see docs/reliability.md).
type RedisHandledStore struct {
	client redis.UniversalClient
	prefix string
	window time.Duration
}

var _ HandledStore = (*RedisHandledStore)(nil)

// NewRedisHandledStore returns a store in client under prefix (a bus's
// StreamPrefix, typically) whose marks last window (0: DefaultHandledWindow;
// at least 1ms).
func NewRedisHandledStore(client redis.UniversalClient, prefix string, window time.Duration) (*RedisHandledStore, error) {
	if window == 0 {
		window = DefaultHandledWindow
	}
	if window < time.Millisecond {
		return nil, fmt.Errorf("%w: handled window %s: use at least 1ms, or 0 for the default (%s)", bus.ErrInvalidConfig, window, DefaultHandledWindow)
	}
	if client == nil {
		return nil, fmt.Errorf("%w: NewRedisHandledStore needs a Redis client", bus.ErrInvalidConfig)
	}
	return &RedisHandledStore{client: client, prefix: prefix, window: window}, nil
}

// Key returns the Redis key that holds the mark of key.
func (s *RedisHandledStore) Key(key string) string { return s.prefix + "$handled:" + key }

// IsHandled implements HandledStore (EXISTS).
func (s *RedisHandledStore) IsHandled(ctx context.Context, key string) (bool, error) {
	n, err := s.client.Exists(ctx, s.Key(key)).Result()
	return n > 0, err
}

// MarkHandled implements HandledStore (SET PX window).
func (s *RedisHandledStore) MarkHandled(ctx context.Context, key string) error {
	return s.client.Set(ctx, s.Key(key), "1", s.window).Err()
}

// HandledKey is the key Dedup marks for msg: the consumer group it was
// delivered to (bus.MetaGroup), its type and its event id. Every handler of
// the router is its own group, so a mark is per handler.
func HandledKey(msg *message.Message) string {
	return msg.Metadata.Get(bus.MetaGroup) + ":" + msg.Metadata.Get(bus.MetaTopic) + ":" + msg.UUID
}

// Dedup is handler middleware that runs a handler at most once per event
// (within the store's window): before the handler it asks the store whether
// the event was handled, and if so returns success at once (the event is
// acked, the handler does not run, OnDuplicate is called); after the handler
// succeeds it marks the event handled. A redelivery after a crash between
// handling and ack, or a consumer that claims a dead one's entries, then
// acks without repeating the work.
//
// It is not Watermill's middleware.Deduplicator, which falls short here: its
// ExpiringKeyRepository.IsDuplicate checks and marks in one step before the
// handler runs, so a handler that then fails, times out or is killed has its
// event marked anyway, and the retry or redelivery is dropped as a
// duplicate: the event is lost. Its default key is a hash of the payload,
// which takes two events with equal data for one. Dedup marks only after
// success and keys by event id.
//
// When the handler returns messages for the router to publish, the mark is
// written when the event is acked, that is after the router published them:
// a crash in between runs the handler again rather than losing them (publish
// them with ids derived from the event's id, and the publisher's own
// deduplication drops the repeats). A store error before the handler fails
// the attempt (it is retried); a failed mark is logged and the event still
// acked: at worst a later redelivery runs the handler again.
type Dedup struct {
	Store HandledStore
	// Logger receives failed marks. Default: none.
	Logger watermill.LoggerAdapter
	// OnDuplicate, when set, is called for each event skipped as handled.
	OnDuplicate func(*message.Message)
	// MarkTimeout bounds a mark written after the ack. Default 10 s.
	MarkTimeout time.Duration
}

// Middleware implements message.HandlerMiddleware.
func (d Dedup) Middleware(h message.HandlerFunc) message.HandlerFunc {
	if d.Logger == nil {
		d.Logger = watermill.NopLogger{}
	}
	if d.MarkTimeout <= 0 {
		d.MarkTimeout = 10 * time.Second
	}
	return func(msg *message.Message) ([]*message.Message, error) {
		if _, bad := bus.IsMalformed(msg); bad {
			return h(msg) // no reliable id: the stack dead-letters it
		}
		key := HandledKey(msg)
		done, err := d.Store.IsHandled(msg.Context(), key)
		if err != nil {
			return nil, fmt.Errorf("dedup: cannot tell whether event %s was handled: %w", msg.UUID, err)
		}
		if done {
			if d.OnDuplicate != nil {
				d.OnDuplicate(msg)
			}
			return nil, nil
		}
		out, err := h(msg)
		if err != nil {
			return out, err
		}
		if len(out) == 0 {
			d.mark(msg.Context(), msg, key)
			return nil, nil
		}
		go d.markOnAck(msg, key)
		return out, nil
	}
}

func (d Dedup) mark(ctx context.Context, msg *message.Message, key string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.MarkTimeout)
	defer cancel()
	if err := d.Store.MarkHandled(ctx, key); err != nil {
		d.Logger.Error("Dedup: cannot mark event handled (a redelivery would run the handler again)", err, watermill.LogFields{"event_id": msg.UUID, "key": key})
	}
}

// markOnAck marks key once msg is acked (the router acks after publishing
// what the handler returned); a nack leaves it unmarked.
func (d Dedup) markOnAck(msg *message.Message, key string) {
	t := time.NewTimer(d.MarkTimeout + time.Minute)
	defer t.Stop()
	select {
	case <-msg.Acked():
		d.mark(msg.Context(), msg, key)
	case <-msg.Nacked():
	case <-t.C:
	}
}
