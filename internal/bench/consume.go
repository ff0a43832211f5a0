package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/router"
)

// The end-to-end variants: n events written before the measurement starts,
// consumed in a consumer group by a no-op handler and acked.
const (
	// EndToEndRedisstream is a redisstream.Subscriber (default settings but
	// BlockTime 250 ms, the bus's default) through a plain Watermill router.
	EndToEndRedisstream = "redisstream-router"
	// EndToEndBusSubscriber is a bus.Subscriber (default settings) through a
	// plain Watermill router.
	EndToEndBusSubscriber = "bus-subscriber"
	// EndToEndBusRouter is router.New(bus, router.Config{}, nil): the bus's
	// default middleware stack (stats, dead letter, max deliveries,
	// validation, retry, tracing, hard timeout, recoverer).
	EndToEndBusRouter = "bus-router-defaults"
)

// EndToEndVariants are the end-to-end variants, baseline first.
var EndToEndVariants = []string{EndToEndRedisstream, EndToEndBusSubscriber, EndToEndBusRouter}

// PatternVariant names the pattern variant over streams streams.
func PatternVariant(streams int) string { return fmt.Sprintf("streams-%d", streams) }

// Measurement is what one measured run of a variant gave.
type Measurement struct {
	// Events is the number of events measured.
	Events int `json:"events"`
	// Elapsed is the measured wall time.
	Elapsed time.Duration `json:"elapsedNs"`
	// CPU is this process's CPU time (user + system, every goroutine, GC
	// included) over the measurement; 0 where the platform cannot tell.
	CPU time.Duration `json:"cpuNs"`
	// P50 and P99 are the round-trip latencies of the latency variants.
	P50 time.Duration `json:"p50Ns,omitempty"`
	P99 time.Duration `json:"p99Ns,omitempty"`
	// Conns is the number of Redis connections a consumer held at the end
	// (CLIENT LIST; its client has a unique CLIENT SETNAME).
	Conns int `json:"conns,omitempty"`
}

// EventsPerSec returns Events over Elapsed.
func (m Measurement) EventsPerSec() float64 {
	if m.Elapsed <= 0 {
		return 0
	}
	return float64(m.Events) / m.Elapsed.Seconds()
}

// CPUPerEvent returns the process CPU time per event in nanoseconds.
func (m Measurement) CPUPerEvent() float64 {
	if m.Events == 0 {
		return 0
	}
	return float64(m.CPU.Nanoseconds()) / float64(m.Events)
}

// Consumer is a consuming variant, set up: n events are in Redis, and a
// router with a no-op handler waits to consume them. Start it, Wait for the
// last event, then Close it.
type Consumer struct {
	// Name is the variant.
	Name string

	n        int
	r        runner
	c        *counter
	admin    *redis.Client
	connName string
	closers  closers

	errc  chan error
	start time.Time
	cpu0  time.Duration
}

// NewEndToEnd prefills n events on t and sets up the end-to-end variant
// name to consume them.
func NewEndToEnd(ctx context.Context, t *Target, name string, n int) (*Consumer, error) {
	c := &Consumer{Name: name, n: n, c: newCounter(n), admin: t.admin}
	var err error
	switch name {
	case EndToEndRedisstream:
		err = c.setupRedisstream(ctx, t)
	case EndToEndBusSubscriber, EndToEndBusRouter:
		err = c.setupBus(ctx, t, name == EndToEndBusRouter)
	default:
		return nil, fmt.Errorf("%w: unknown end-to-end variant %q", ErrInvalidOptions, name)
	}
	if err != nil {
		_ = c.closers.close()
		return nil, fmt.Errorf("set up %s: %w", name, err)
	}
	return c, nil
}

// NewPattern registers streams event types on t, prefills n events spread
// evenly over them and sets up one bus pattern subscription over all of
// them ("bench.*") through a plain Watermill router.
func NewPattern(ctx context.Context, t *Target, streams, n int) (*Consumer, error) {
	c := &Consumer{Name: PatternVariant(streams), n: n, c: newCounter(n), admin: t.admin}
	if err := c.setupPattern(ctx, t, streams); err != nil {
		_ = c.closers.close()
		return nil, fmt.Errorf("set up %s: %w", c.Name, err)
	}
	return c, nil
}

func (c *Consumer) namedClient(t *Target) *redis.Client {
	c.connName = uniqueName()
	return t.newClient(c.connName)
}

func (c *Consumer) setupRedisstream(ctx context.Context, t *Target) error {
	topic := t.prefix + evType
	if err := prefill(ctx, t.admin, c.n, func(int) string { return topic }, func(int) any { return redisstreamValues(evType) }); err != nil {
		return err
	}
	client := c.namedClient(t)
	c.closers.add(ignoreErr(client.Close)) // the subscriber closes it
	sub, err := newRedisstreamSubscriber(client)
	if err != nil {
		return err
	}
	c.closers.add(sub.Close)
	c.r, err = newRouter(sub, topic, c.c.handle)
	return err
}

func (c *Consumer) setupBus(ctx context.Context, t *Target, defaults bool) error {
	key := bus.Config{StreamPrefix: t.prefix}.StreamKey(evType)
	if err := prefill(ctx, t.admin, c.n, func(int) string { return key }, func(int) any { return busFields(evType) }); err != nil {
		return err
	}
	c.connName = uniqueName()
	b, err := openBus(t, &c.closers, c.connName)
	if err != nil {
		return err
	}
	if defaults {
		r, err := router.New(b, router.Config{}, watermill.NopLogger{})
		if err != nil {
			return fmt.Errorf("router.New: %w", err)
		}
		c.r = r
		return r.AddHandler("noop", evType, c.c.handleCtx)
	}
	sub, err := b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: group})
	if err != nil {
		return err
	}
	c.r, err = newRouter(sub, evType, c.c.handle)
	return err
}

func (c *Consumer) setupPattern(ctx context.Context, t *Target, streams int) error {
	types := typeNames(streams)
	if err := register(ctx, t.admin, t.prefix, types); err != nil {
		return err
	}
	cfg := bus.Config{StreamPrefix: t.prefix}
	if err := prefill(ctx, t.admin, c.n,
		func(i int) string { return cfg.StreamKey(types[i%streams]) },
		func(i int) any { return busFields(types[i%streams]) }); err != nil {
		return err
	}
	c.connName = uniqueName()
	b, err := openBus(t, &c.closers, c.connName)
	if err != nil {
		return err
	}
	sub, err := b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: group})
	if err != nil {
		return err
	}
	c.r, err = newRouter(sub, pattern, c.c.handle)
	return err
}

// Start runs the router in a goroutine; the measurement starts now.
func (c *Consumer) Start() {
	c.errc = make(chan error, 1)
	c.start, c.cpu0 = time.Now(), processCPU()
	go func() { c.errc <- c.r.Run(context.Background()) }()
}

// Wait returns once the handler has seen every event: the time and process
// CPU since Start, and the connections the consumer then holds (counted
// after the time is taken).
func (c *Consumer) Wait(ctx context.Context) (Measurement, error) {
	if c.errc == nil {
		return Measurement{}, errors.New("bench: Consumer.Wait before Start")
	}
	timeout := time.NewTimer(waitLimit)
	defer timeout.Stop()
	select {
	case <-c.c.done:
		m := Measurement{Events: c.n, Elapsed: time.Since(c.start), CPU: processCPU() - c.cpu0}
		conns, err := connCount(ctx, c.admin, c.connName)
		if err != nil {
			return m, err
		}
		m.Conns = conns
		return m, nil
	case err := <-c.errc:
		c.errc <- err // for Close
		return Measurement{}, fmt.Errorf("%s: router stopped after %d of %d events: %v", c.Name, c.c.seen.Load(), c.n, err)
	case <-timeout.C:
		return Measurement{}, fmt.Errorf("%s: handler saw %d of %d events in %s", c.Name, c.c.seen.Load(), c.n, waitLimit)
	case <-ctx.Done():
		return Measurement{}, ctx.Err()
	}
}

// Close stops the router, waits for it to return and closes what the
// variant opened.
func (c *Consumer) Close() error {
	var err error
	if c.errc != nil {
		err = c.r.Close()
		if runErr := <-c.errc; runErr != nil && !errors.Is(runErr, context.Canceled) && err == nil {
			err = runErr
		}
		c.errc = nil
	} else if c.r != nil {
		err = c.r.Close()
	}
	if cerr := c.closers.close(); err == nil {
		err = cerr
	}
	return err
}

// counter is a no-op handler that closes done when it has seen n messages.
type counter struct {
	n    int64
	seen atomic.Int64
	done chan struct{}
}

func newCounter(n int) *counter { return &counter{n: int64(n), done: make(chan struct{})} }

func (c *counter) handle(*message.Message) error {
	if c.seen.Add(1) == c.n {
		close(c.done)
	}
	return nil
}

// handleCtx is handle with the signature of a router.HandlerFunc.
func (c *counter) handleCtx(_ context.Context, msg *message.Message) error { return c.handle(msg) }

// runner is what the scenarios need of a router: Watermill's
// *message.Router and the bus's *router.Router have this shape.
type runner interface {
	Run(ctx context.Context) error
	Close() error
}

// newRouter returns a plain Watermill router with handler on topic of sub.
func newRouter(sub message.Subscriber, topic string, handler message.NoPublishHandlerFunc) (*message.Router, error) {
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: routerClose}, watermill.NopLogger{})
	if err != nil {
		return nil, fmt.Errorf("message.NewRouter: %w", err)
	}
	r.AddConsumerHandler("noop", topic, sub, handler)
	return r, nil
}

// newRedisstreamSubscriber returns a plain watermill-redisstream subscriber
// in the consumer group with default settings besides BlockTime (the bus's
// default). Its Close closes client.
func newRedisstreamSubscriber(client redis.UniversalClient) (*redisstream.Subscriber, error) {
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client:        client,
		ConsumerGroup: group,
		BlockTime:     bus.DefaultBlockTime,
	}, watermill.NopLogger{})
	if err != nil {
		return nil, fmt.Errorf("redisstream.NewSubscriber: %w", err)
	}
	return sub, nil
}

// uniqueName returns a client name unique to this run: "bench-<8 hex>".
func uniqueName() string {
	var r [4]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "bench-" + hex.EncodeToString(r[:])
}

// connCount returns how many connections named name Redis holds open.
func connCount(ctx context.Context, admin *redis.Client, name string) (int, error) {
	if name == "" {
		return 0, nil
	}
	list, err := admin.ClientList(ctx).Result()
	if err != nil {
		return 0, fmt.Errorf("CLIENT LIST: %w", err)
	}
	return CountClients(list, name), nil
}
