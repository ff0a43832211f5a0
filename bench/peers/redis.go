package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/router"
)

const (
	// service is the bus ServiceName of the bus systems.
	service = "peers"
	// readCount is the COUNT of the plain go-redis reader: the bus's
	// default BatchSize.
	readCount = 100
	// routerClose is the CloseTimeout of every Watermill router.
	routerClose = 10 * time.Second
)

// evType is the bus event type of a logical topic.
func evType(topic string) string { return "peers." + topic }

// busFields are the stream fields the bus publisher writes for one event
// without extra attributes, so plain go-redis writes what the bus writes.
func busFields(typ string, data []byte) []any {
	return []any{
		bus.AttrID, watermill.NewUUID(),
		bus.AttrType, typ,
		bus.AttrSource, service,
		bus.AttrSpecVersion, bus.SpecVersion,
		bus.AttrTime, time.Now().UTC().Format(time.RFC3339Nano),
		bus.AttrDataContentType, bus.DefaultContentType,
		bus.FieldData, data,
	}
}

// goRedis is the ceiling: XADD per event; per group one reader doing
// XREADGROUP COUNT 100 BLOCK 250ms and one XACK of the whole batch.
type goRedis struct {
	client *redis.Client
	prefix string
}

func newGoRedis(opt *redis.Options, prefix string) *goRedis {
	return &goRedis{client: redis.NewClient(opt), prefix: prefix + "goredis:"}
}

func (g *goRedis) Name() string { return "go-redis" }
func (g *goRedis) key(t string) string {
	return bus.Config{StreamPrefix: g.prefix}.StreamKey(evType(t))
}

func (g *goRedis) Prepare(ctx context.Context, topic string, groups []string) error {
	for _, gr := range groups {
		err := g.client.XGroupCreateMkStream(ctx, g.key(topic), gr, "0").Err()
		if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
			return fmt.Errorf("XGROUP CREATE: %w", err)
		}
	}
	return nil
}

func (g *goRedis) Publisher(_ context.Context, topic string) (func(context.Context, []byte) error, func() error, error) {
	key, typ := g.key(topic), evType(topic)
	return func(ctx context.Context, data []byte) error {
		return g.client.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: busFields(typ, data), MaxLen: bus.DefaultMaxLen, Approx: true}).Err()
	}, func() error { return nil }, nil
}

func (g *goRedis) Subscribe(ctx context.Context, topic string, groups []string, on func(int, []byte)) (func() error, error) {
	if err := g.Prepare(ctx, topic, groups); err != nil {
		return nil, err
	}
	key := g.key(topic)
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	errs := make([]error, len(groups))
	for i, gr := range groups {
		wg.Go(func() {
			for ctx.Err() == nil {
				res, err := g.client.XReadGroup(ctx, &redis.XReadGroupArgs{
					Group: gr, Consumer: "c", Streams: []string{key, ">"}, Count: readCount, Block: bus.DefaultBlockTime,
				}).Result()
				if errors.Is(err, redis.Nil) {
					continue
				}
				if err != nil {
					if ctx.Err() == nil {
						errs[i] = fmt.Errorf("XREADGROUP: %w", err)
					}
					return
				}
				for _, s := range res {
					ids := make([]string, 0, len(s.Messages))
					for _, m := range s.Messages {
						d, _ := m.Values[bus.FieldData].(string)
						on(i, []byte(d))
						ids = append(ids, m.ID)
					}
					if err := g.client.XAck(ctx, key, gr, ids...).Err(); err != nil && ctx.Err() == nil {
						errs[i] = fmt.Errorf("XACK: %w", err)
						return
					}
				}
			}
		})
	}
	return func() error { cancel(); wg.Wait(); return errors.Join(errs...) }, nil
}

func (g *goRedis) Cleanup(ctx context.Context, topic string, _ []string) error {
	return g.client.Del(ctx, g.key(topic)).Err()
}

func (g *goRedis) Close() error { return g.client.Close() }

// redisStream is watermill-redisstream v1.4.5 with its default marshaller
// and settings but BlockTime (the bus's 250 ms), through a plain router.
type redisStream struct {
	opt    *redis.Options
	prefix string
	pub    *redisstream.Publisher
}

func newRedisStream(opt *redis.Options, prefix string) (*redisStream, error) {
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{
		Client: redis.NewClient(opt), DefaultMaxlen: bus.DefaultMaxLen,
	}, watermill.NopLogger{})
	if err != nil {
		return nil, fmt.Errorf("redisstream.NewPublisher: %w", err)
	}
	return &redisStream{opt: opt, prefix: prefix + "redisstream:", pub: pub}, nil
}

func (r *redisStream) Name() string                                    { return "redisstream" }
func (r *redisStream) key(t string) string                             { return r.prefix + t }
func (r *redisStream) Prepare(context.Context, string, []string) error { return nil } // groups start at "0"

func (r *redisStream) Publisher(_ context.Context, topic string) (func(context.Context, []byte) error, func() error, error) {
	key := r.key(topic)
	return func(_ context.Context, data []byte) error {
		return r.pub.Publish(key, message.NewMessage(watermill.NewUUID(), data))
	}, func() error { return nil }, nil
}

func (r *redisStream) Subscribe(ctx context.Context, topic string, groups []string, on func(int, []byte)) (func() error, error) {
	subs := make([]message.Subscriber, len(groups))
	for i, gr := range groups {
		s, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
			Client: redis.NewClient(r.opt), ConsumerGroup: gr, BlockTime: bus.DefaultBlockTime,
		}, watermill.NopLogger{})
		if err != nil {
			return nil, fmt.Errorf("redisstream.NewSubscriber: %w", err)
		}
		subs[i] = s
	}
	return runRouter(ctx, r.key(topic), subs, on)
}

func (r *redisStream) Cleanup(ctx context.Context, topic string, _ []string) error {
	c := redis.NewClient(r.opt)
	defer c.Close()
	return c.Del(ctx, r.key(topic)).Err()
}

func (r *redisStream) Close() error { return r.pub.Close() }

// busSystem is the bus with default settings: its publisher, and either
// bus.Subscriber through a plain Watermill router or router.New defaults.
type busSystem struct {
	client   *redis.Client
	b        *bus.Bus
	defaults bool
}

func newBus(opt *redis.Options, prefix string, defaults bool) (*busSystem, error) {
	client := redis.NewClient(opt)
	name := "bus-subscriber"
	if defaults {
		name = "bus-router"
	}
	b, err := bus.New(bus.Config{ServiceName: service, Client: client, StreamPrefix: prefix + name + ":"}, watermill.NopLogger{})
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("bus.New: %w", err)
	}
	return &busSystem{client: client, b: b, defaults: defaults}, nil
}

func (s *busSystem) Name() string {
	if s.defaults {
		return "bus-router"
	}
	return "bus-subscriber"
}

func (s *busSystem) Prepare(context.Context, string, []string) error { return nil } // groups start at "0"

func (s *busSystem) Publisher(_ context.Context, topic string) (func(context.Context, []byte) error, func() error, error) {
	pub, typ := s.b.Publisher(), evType(topic)
	return func(_ context.Context, data []byte) error {
		return pub.Publish(typ, message.NewMessage(watermill.NewUUID(), data))
	}, func() error { return nil }, nil
}

func (s *busSystem) Subscribe(ctx context.Context, topic string, groups []string, on func(int, []byte)) (func() error, error) {
	typ := evType(topic)
	if !s.defaults {
		subs := make([]message.Subscriber, len(groups))
		for i, gr := range groups {
			sub, err := s.b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: gr})
			if err != nil {
				return nil, err
			}
			subs[i] = sub
		}
		return runRouter(ctx, typ, subs, on)
	}
	r, err := router.New(s.b, router.Config{}, watermill.NopLogger{})
	if err != nil {
		return nil, fmt.Errorf("router.New: %w", err)
	}
	for i, gr := range groups {
		if err := r.AddHandler(gr, typ, func(_ context.Context, m *message.Message) error { on(i, m.Payload); return nil }); err != nil {
			return nil, err
		}
	}
	return run(ctx, r)
}

func (s *busSystem) Cleanup(ctx context.Context, topic string, _ []string) error {
	return s.client.Del(ctx, s.b.Config().StreamKey(evType(topic))).Err()
}

func (s *busSystem) Close() error { return errors.Join(s.b.Close(), s.client.Close()) }

// runRouter runs a plain Watermill router with one no-op handler per
// subscriber on topic, each reporting to on, until stop.
func runRouter(ctx context.Context, topic string, subs []message.Subscriber, on func(int, []byte)) (func() error, error) {
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: routerClose}, watermill.NopLogger{})
	if err != nil {
		return nil, err
	}
	for i, s := range subs {
		r.AddConsumerHandler(fmt.Sprintf("h%d", i), topic, s, func(m *message.Message) error { on(i, m.Payload); return nil })
	}
	return run(ctx, r)
}

// runner is a Watermill router or the bus's router.
type runner interface {
	Run(ctx context.Context) error
	Running() chan struct{}
	Close() error
}

// run runs r until the returned stop is called; it returns once r runs.
func run(ctx context.Context, r runner) (func() error, error) {
	errc := make(chan error, 1)
	go func() { errc <- r.Run(context.WithoutCancel(ctx)) }()
	select {
	case <-r.Running():
	case err := <-errc:
		return nil, fmt.Errorf("router stopped before running: %v", err)
	case <-ctx.Done():
		_ = r.Close()
		return nil, ctx.Err()
	}
	return func() error {
		err := r.Close()
		if rerr := <-errc; rerr != nil && !errors.Is(rerr, context.Canceled) && err == nil {
			err = rerr
		}
		return err
	}, nil
}
