//go:build faults

package faults

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/faultproxy"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// The set-up the fault tests share: clients (direct, through a fault proxy,
// with faultClientOptions), a bus with its topic's stream key and a tracker,
// subscribers closed at cleanup, and a steady load of events.

// faultClientOptions are the go-redis options the fault tests give the bus's
// client (see docs/reliability.md, "Client options"):
//
//   - DialTimeout, ReadTimeout, WriteTimeout 1 s: a dead or stalled server
//     shows up as an error within a second instead of the 3 s (read) default.
//     Blocking XREADGROUPs are not cut short by ReadTimeout: go-redis waits
//     BLOCK + 10 s for them.
//   - ContextTimeoutEnabled: a Publish returns by its context's deadline.
//   - MaxRetries -1: go-redis does not retry a command on its own. A retried
//     XADD whose first reply was lost (not whose request was lost) writes the
//     event twice; without retries the publisher sees the error and decides.
//     The subscriber needs no help: it retries reads with exponential backoff,
//     and entries whose XACK failed are delivered again.
func faultClientOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:                  addr,
		DialTimeout:           time.Second,
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
	}
}

// viaProxy returns a direct client to the test Redis (the single one at
// REDIS_URL: a proxy in front of a cluster node would be bypassed by MOVED
// redirects), a fault proxy in front of it, and a client through the proxy
// with faultClientOptions.
func viaProxy(t *testing.T) (direct redis.UniversalClient, p *faultproxy.Proxy, proxied *redis.Client) {
	t.Helper()
	opts, err := redis.ParseURL(redistest.URL())
	require.NoError(t, err, "REDIS_URL")
	direct = redis.NewClient(opts)
	t.Cleanup(func() { _ = direct.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if err := direct.Ping(ctx).Err(); err != nil {
		t.Fatalf("no Redis at %s: run `make test-faults` (it starts one), or start redis-server, or set REDIS_URL: %v", opts.Addr, err)
	}
	p, err = faultproxy.New(opts.Addr)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, p.Close()) })
	po := faultClientOptions(p.Addr())
	po.DB, po.Username, po.Password = opts.DB, opts.Username, opts.Password
	po.ClientName = "faults-" + watermill.NewShortUUID()[:8] // to find its connections in CLIENT LIST
	proxied = redis.NewClient(po)
	t.Cleanup(func() { _ = proxied.Close() })
	return direct, p, proxied
}

// newBus returns a bus on client with the given prefix, closed at cleanup.
func newBus(t *testing.T, client redis.UniversalClient, prefix string, logger watermill.LoggerAdapter) *bus.Bus {
	t.Helper()
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	b, err := bus.New(bus.Config{ServiceName: "faults", Client: client, StreamPrefix: prefix}, logger)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// subscribe subscribes a new subscriber of b to topic and closes it at cleanup
// (bounded: a stuck Close fails the test instead of hanging it).
func subscribe(t *testing.T, b *bus.Bus, cfg bus.SubscriberConfig, topic string) (*bus.Subscriber, <-chan *message.Message) {
	t.Helper()
	sub, err := b.NewSubscriber(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := sub.Subscribe(ctx, topic)
	require.NoError(t, err)
	t.Cleanup(func() {
		cancel()
		done := make(chan error, 1)
		go func() { done <- sub.Close() }()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, bus.ErrClosed) {
				t.Errorf("closing the subscriber: %v", err)
			}
		case <-time.After(cfg.CloseTimeout + 10*time.Second):
			t.Errorf("subscriber Close did not return within %s", cfg.CloseTimeout+10*time.Second)
		}
	})
	return sub, ch
}

// setup returns a bus on client under prefix (see newBus), the stream key of
// topic on it, and a new tracker: what every fault test starts from.
func setup(t *testing.T, client redis.UniversalClient, prefix, topic string, logger watermill.LoggerAdapter) (b *bus.Bus, key string, tr *tracker) {
	t.Helper()
	b = newBus(t, client, prefix, logger)
	return b, b.Config().StreamKey(topic), newTracker()
}

// loadConfig is the subscriber config of the tests under load: group, reads
// blocking 100 ms, claims every 500 ms of what is idle 2 s, Close bounded by 2 s.
func loadConfig(group string) bus.SubscriberConfig {
	return bus.SubscriberConfig{
		ConsumerGroup: group,
		BlockTime:     100 * time.Millisecond,
		ClaimInterval: 500 * time.Millisecond,
		ClaimMinIdle:  2 * time.Second,
		CloseTimeout:  2 * time.Second,
	}
}

// startLoad subscribes to topic with cfg, hands every message to tr (see
// consume), and publishes an event every 2 ms (each Publish bounded by 1 s;
// see publishLoop) until stopPublishing is called or the test ends.
// stopPublishing returns once the publisher has stopped; it may be called
// more than once.
func startLoad(t *testing.T, b *bus.Bus, cfg bus.SubscriberConfig, topic string, tr *tracker) (stopPublishing func()) {
	t.Helper()
	_, ch := subscribe(t, b, cfg, topic)
	go consume(ch, tr, 0)

	ctx, cancel := context.WithCancel(context.Background())
	var pubDone sync.WaitGroup
	pubDone.Add(1)
	go func() {
		defer pubDone.Done()
		publishLoop(ctx, b.Publisher(), topic, tr, 2*time.Millisecond, time.Second)
	}()
	stopPublishing = func() { cancel(); pubDone.Wait() }
	t.Cleanup(stopPublishing)
	return stopPublishing
}
