package bus

import (
	"context"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"
)

// registryWatcher holds the one Pub/Sub connection of a Bus that listens for
// new-type notifications and forwards each to the pattern subscriptions it
// matches. A notification lost (say during a reconnect) is repaired by each
// subscription's periodic resync of the registry set.
type registryWatcher struct {
	client  redis.UniversalClient
	channel string
	logger  watermill.LoggerAdapter

	mu     sync.Mutex
	subs   map[*subscription]struct{}
	ps     *redis.PubSub
	done   chan struct{}
	closed bool
}

func newRegistryWatcher(client redis.UniversalClient, channel string, logger watermill.LoggerAdapter) *registryWatcher {
	return &registryWatcher{client: client, channel: channel, logger: logger, subs: map[*subscription]struct{}{}}
}

// add registers sub, starting the Pub/Sub subscription first if needed and
// waiting for Redis to confirm it, so that a type registered after add
// returns is always announced to sub.
func (w *registryWatcher) add(ctx context.Context, sub *subscription) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if w.ps == nil {
		ps := w.client.Subscribe(ctx, w.channel)
		if _, err := ps.Receive(ctx); err != nil {
			_ = ps.Close()
			return err
		}
		w.ps = ps
		w.done = make(chan struct{})
		go w.loop(ps.Channel(), w.done)
	}
	w.subs[sub] = struct{}{}
	return nil
}

func (w *registryWatcher) remove(sub *subscription) {
	w.mu.Lock()
	delete(w.subs, sub)
	w.mu.Unlock()
}

func (w *registryWatcher) loop(ch <-chan *redis.Message, done chan struct{}) {
	defer close(done)
	for m := range ch {
		if ValidateType(m.Payload) != nil {
			continue
		}
		w.mu.Lock()
		for sub := range w.subs {
			if Match(sub.topic, m.Payload) {
				select {
				case sub.newTypes <- m.Payload:
				default: // full: the resync will find it
				}
			}
		}
		w.mu.Unlock()
	}
}

func (w *registryWatcher) close() {
	w.mu.Lock()
	w.closed = true
	ps, done := w.ps, w.done
	w.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
		<-done
	}
}
