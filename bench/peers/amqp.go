package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp091 "github.com/rabbitmq/amqp091-go"
)

// amqpChannels is the publisher's channel pool: one per publishing goroutine.
const amqpChannels = 4

// amqpPrefetch is the subscriber's prefetch: the bus's read batch.
const amqpPrefetch = 100

// rabbit is watermill-amqp v3 on RabbitMQ with NewDurablePubSubConfig (a
// fanout exchange per topic, a durable queue per consumer group: topic_group)
// and the two throughput settings its config documents: a publisher channel
// pool (ChannelPoolSize 4; 0 opens a channel per Publish) and the consumer's
// QoS prefetch (PrefetchCount 100; the config's default is 1). No publisher
// confirms (ConfirmDelivery false, its default) and persistent delivery mode
// (its marshaller's default).
type rabbit struct {
	uri    string
	prefix string
	pub    *amqp.Publisher
	conn   *amqp091.Connection
}

func newRabbit(uri, prefix string) (*rabbit, error) {
	conn, err := amqp091.Dial(uri)
	if err != nil {
		return nil, fmt.Errorf("connect to RabbitMQ at %s: %w", uri, err)
	}
	r := &rabbit{uri: uri, prefix: prefix, conn: conn}
	pub, err := amqp.NewPublisher(r.config(""), watermill.NopLogger{})
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("watermill-amqp publisher: %w", err)
	}
	r.pub = pub
	return r, nil
}

func (r *rabbit) config(group string) amqp.Config {
	cfg := amqp.NewDurablePubSubConfig(r.uri, amqp.GenerateQueueNameTopicNameWithSuffix(group))
	cfg.Publish.ChannelPoolSize = amqpChannels
	cfg.Consume.Qos.PrefetchCount = amqpPrefetch
	return cfg
}

func (r *rabbit) Name() string                 { return "rabbitmq" }
func (r *rabbit) exchange(topic string) string { return r.prefix + topic }

func (r *rabbit) Prepare(_ context.Context, topic string, groups []string) error {
	for _, gr := range groups {
		s, err := amqp.NewSubscriber(r.config(gr), watermill.NopLogger{})
		if err != nil {
			return fmt.Errorf("watermill-amqp subscriber: %w", err)
		}
		err = s.SubscribeInitialize(r.exchange(topic))
		if cerr := s.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("declare queue of %s: %w", gr, err)
		}
	}
	return nil
}

func (r *rabbit) Publisher(_ context.Context, topic string) (func(context.Context, []byte) error, func() error, error) {
	ex := r.exchange(topic)
	return func(_ context.Context, data []byte) error {
		return r.pub.Publish(ex, message.NewMessage(watermill.NewUUID(), data))
	}, func() error { return nil }, nil
}

func (r *rabbit) Subscribe(ctx context.Context, topic string, groups []string, on func(int, []byte)) (func() error, error) {
	subs := make([]message.Subscriber, len(groups))
	for i, gr := range groups {
		s, err := amqp.NewSubscriber(r.config(gr), watermill.NopLogger{})
		if err != nil {
			return nil, fmt.Errorf("watermill-amqp subscriber: %w", err)
		}
		subs[i] = s
	}
	return runRouter(ctx, r.exchange(topic), subs, on)
}

func (r *rabbit) Cleanup(_ context.Context, topic string, groups []string) error {
	ch, err := r.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	ex := r.exchange(topic)
	var errs []error
	for _, gr := range groups {
		if _, err := ch.QueueDelete(ex+"_"+gr, false, false, false); err != nil {
			errs = append(errs, err)
		}
	}
	if err := ch.ExchangeDelete(ex, false, false); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (r *rabbit) Close() error { return errors.Join(r.pub.Close(), r.conn.Close()) }
