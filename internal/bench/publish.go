package bench

import (
	"context"
	"fmt"
	"strconv"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
)

// The publish variants. Every one writes the same event (the six attributes
// the bus publisher sets and a 130-byte JSON data) to one stream and trims
// with MAXLEN ~ 100000; each call builds fresh messages (new id, new time).
const (
	// PublishGoRedis is one XADD per call with plain go-redis.
	PublishGoRedis = "goredis-xadd"
	// PublishRedisstream is one redisstream.Publisher.Publish of one message.
	PublishRedisstream = "redisstream"
	// PublishBus is one bus Publisher.Publish of one event (type registered).
	PublishBus = "bus"
)

// The batch publish variants: Batch events per call.
var (
	// PublishGoRedisBatch is Batch XADDs in one go-redis pipeline per call.
	PublishGoRedisBatch = "goredis-pipeline" + strconv.Itoa(Batch)
	// PublishRedisstreamBatch is one redisstream Publish of Batch messages
	// (it sends one XADD after the other).
	PublishRedisstreamBatch = "redisstream" + strconv.Itoa(Batch)
	// PublishBusBatch is one bus Publish of Batch events (one pipeline).
	PublishBusBatch = "bus" + strconv.Itoa(Batch)
)

// PublishVariants are the single-event publish variants, baseline first.
var PublishVariants = []string{PublishGoRedis, PublishRedisstream, PublishBus}

// BatchVariants are the batch publish variants, baseline first.
var BatchVariants = []string{PublishGoRedisBatch, PublishRedisstreamBatch, PublishBusBatch}

// Publisher is one publish variant, set up: each Publish call sends PerCall
// events to one stream under the Target's prefix, from the calling
// goroutine. Close it when done.
type Publisher struct {
	// Name is the variant (PublishGoRedis, …).
	Name string
	// PerCall is the number of events one Publish call sends: 1 or Batch.
	PerCall int

	publish func(ctx context.Context) error
	closers closers
}

// NewPublisher sets up the publish variant name on t: its own client and,
// for the bus, a first publish that registers the type (so the measured
// calls do not).
func NewPublisher(ctx context.Context, t *Target, name string) (*Publisher, error) {
	p := &Publisher{Name: name, PerCall: 1}
	var err error
	switch name {
	case PublishGoRedis, PublishGoRedisBatch:
		err = p.setupGoRedis(t, name == PublishGoRedisBatch)
	case PublishRedisstream, PublishRedisstreamBatch:
		err = p.setupRedisstream(t, name == PublishRedisstreamBatch)
	case PublishBus, PublishBusBatch:
		err = p.setupBus(ctx, t, name == PublishBusBatch)
	default:
		return nil, fmt.Errorf("%w: unknown publish variant %q", ErrInvalidOptions, name)
	}
	if err != nil {
		_ = p.closers.close()
		return nil, fmt.Errorf("set up %s: %w", name, err)
	}
	return p, nil
}

// Publish sends one call's events (PerCall).
func (p *Publisher) Publish(ctx context.Context) error { return p.publish(ctx) }

// Close closes what the variant opened.
func (p *Publisher) Close() error { return p.closers.close() }

func (p *Publisher) setupGoRedis(t *Target, batch bool) error {
	client := t.newClient("")
	p.closers.add(client.Close)
	key := bus.Config{StreamPrefix: t.prefix}.StreamKey(evType)
	xadd := func() *redis.XAddArgs {
		return &redis.XAddArgs{Stream: key, Values: busFields(evType), MaxLen: maxLen, Approx: true}
	}
	if !batch {
		p.publish = func(ctx context.Context) error { return client.XAdd(ctx, xadd()).Err() }
		return nil
	}
	p.PerCall = Batch
	p.publish = func(ctx context.Context) error {
		pipe := client.Pipeline()
		for range Batch {
			pipe.XAdd(ctx, xadd())
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	return nil
}

func (p *Publisher) setupRedisstream(t *Target, batch bool) error {
	client := t.newClient("")
	p.closers.add(ignoreErr(client.Close)) // the publisher closes it
	pub, err := newRedisstreamPublisher(client)
	if err != nil {
		return err
	}
	p.closers.add(pub.Close)
	topic := t.prefix + evType
	if !batch {
		p.publish = func(context.Context) error { return pub.Publish(topic, attrMessage(evType)) }
		return nil
	}
	p.PerCall = Batch
	msgs := make([]*message.Message, Batch)
	p.publish = func(context.Context) error {
		for i := range msgs {
			msgs[i] = attrMessage(evType)
		}
		return pub.Publish(topic, msgs...)
	}
	return nil
}

func (p *Publisher) setupBus(ctx context.Context, t *Target, batch bool) error {
	b, err := openBus(t, &p.closers, "")
	if err != nil {
		return err
	}
	pub := b.Publisher()
	if err := pub.Publish(evType, busMessage()); err != nil { // registers the type
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !batch {
		p.publish = func(context.Context) error { return pub.Publish(evType, busMessage()) }
		return nil
	}
	p.PerCall = Batch
	msgs := make([]*message.Message, Batch)
	p.publish = func(context.Context) error {
		for i := range msgs {
			msgs[i] = busMessage()
		}
		return pub.Publish(evType, msgs...)
	}
	return nil
}

// newRedisstreamPublisher returns a plain watermill-redisstream publisher
// with the default marshaller, trimming to maxLen. Its Close closes client.
func newRedisstreamPublisher(client redis.UniversalClient) (*redisstream.Publisher, error) {
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{
		Client:        client,
		DefaultMaxlen: maxLen,
	}, watermill.NopLogger{})
	if err != nil {
		return nil, fmt.Errorf("redisstream.NewPublisher: %w", err)
	}
	return pub, nil
}
