package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
)

// natsJS is watermill-nats v2 on JetStream with the settings its own
// pub/sub tests use for at-least-once delivery (pkg/nats/pubsubfactory_test.go):
// AckAsync (the "asynchronous acknowledgement" its JetStreamConfig offers
// for throughput), DeliverAll + AckExplicit, a durable consumer and queue
// group per consumer group, no message-id tracking; one subscriber per group
// (SubscribersCount 1, like the bus's Concurrency 1); file storage (the
// JetStream default). Its publisher waits for the stream's ack per event.
type natsJS struct {
	url    string
	conn   *nats.Conn // for stream management only
	js     nats.JetStreamContext
	prefix string
	pub    *wmnats.Publisher
}

func newNATS(url, prefix string) (*natsJS, error) {
	conn, err := nats.Connect(url, nats.Timeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	js, err := conn.JetStream()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("JetStream: %w", err)
	}
	if _, err := js.AccountInfo(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("JetStream is not enabled on %s (start nats-server with -js): %w", url, err)
	}
	pub, err := wmnats.NewPublisher(wmnats.PublisherConfig{
		URL:       url,
		Marshaler: &wmnats.NATSMarshaler{},
		JetStream: natsJSConfig(""),
	}, watermill.NopLogger{})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("watermill-nats publisher: %w", err)
	}
	return &natsJS{url: url, conn: conn, js: js, prefix: strings.NewReplacer(":", "_", "-", "_").Replace(prefix), pub: pub}, nil
}

func natsJSConfig(group string) wmnats.JetStreamConfig {
	return wmnats.JetStreamConfig{
		AutoProvision:    false, // Prepare creates the stream
		SubscribeOptions: []nats.SubOpt{nats.DeliverAll(), nats.AckExplicit()},
		AckAsync:         true,
		DurablePrefix:    group,
	}
}

func (n *natsJS) Name() string { return "nats-jetstream" }

// stream is the stream name and subject of topic (no '.', '-' or ':').
func (n *natsJS) stream(topic string) string {
	return n.prefix + strings.ReplaceAll(topic, "-", "_")
}

func (n *natsJS) Prepare(_ context.Context, topic string, _ []string) error {
	s := n.stream(topic)
	if _, err := n.js.StreamInfo(s); err == nil {
		return nil
	}
	if _, err := n.js.AddStream(&nats.StreamConfig{Name: s, Subjects: []string{s}}); err != nil {
		return fmt.Errorf("add stream %s: %w", s, err)
	}
	return nil
}

func (n *natsJS) Publisher(_ context.Context, topic string) (func(context.Context, []byte) error, func() error, error) {
	s := n.stream(topic)
	return func(_ context.Context, data []byte) error {
		return n.pub.Publish(s, message.NewMessage(watermill.NewUUID(), data))
	}, func() error { return nil }, nil
}

func (n *natsJS) Subscribe(ctx context.Context, topic string, groups []string, on func(int, []byte)) (func() error, error) {
	if err := n.Prepare(ctx, topic, groups); err != nil {
		return nil, err
	}
	subs := make([]message.Subscriber, len(groups))
	for i, gr := range groups {
		s, err := wmnats.NewSubscriber(wmnats.SubscriberConfig{ // a connection of its own: Close closes it
			URL:              n.url,
			QueueGroupPrefix: gr,
			SubscribersCount: 1,
			AckWaitTimeout:   30 * time.Second,
			CloseTimeout:     routerClose,
			Unmarshaler:      &wmnats.NATSMarshaler{},
			JetStream:        natsJSConfig(gr),
		}, watermill.NopLogger{})
		if err != nil {
			return nil, fmt.Errorf("watermill-nats subscriber: %w", err)
		}
		subs[i] = s
	}
	return runRouter(ctx, n.stream(topic), subs, on)
}

func (n *natsJS) Cleanup(_ context.Context, topic string, _ []string) error {
	err := n.js.DeleteStream(n.stream(topic))
	if errors.Is(err, nats.ErrStreamNotFound) {
		return nil
	}
	return err
}

func (n *natsJS) Close() error {
	err := n.pub.Close() // closes its connection
	n.conn.Close()
	return err
}
