// Command basic shows the event bus in a few lines: publishing, a plain
// subscription, a wildcard handler and a typed handler. It uses the Redis at
// REDIS_URL, or starts an embedded one when REDIS_URL is unset, and exits
// once every event has arrived.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/alicebob/miniredis/v2"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/router"
)

// OrderPlaced is the data of an order.placed event.
type OrderPlaced struct {
	OrderID string  `json:"orderId"`
	Total   float64 `json:"total"`
}

func main() {
	url := os.Getenv("REDIS_URL")
	if url == "" {
		mr := must(miniredis.Run()) // an embedded Redis, to try things out
		defer mr.Close()
		url = "redis://" + mr.Addr()
	}
	b := must(bus.New(bus.Config{ServiceName: "shop", RedisURL: url, StreamPrefix: "examples:basic:"}, nil))
	defer b.Close()
	ctx := context.Background()
	got := make(chan string, 10)
	time.AfterFunc(10*time.Second, func() { log.Fatal("timed out waiting for the events") })

	// A router runs handlers, each its own consumer group ("shop.<name>").
	r := must(router.New(b, router.Config{}, nil))
	check(router.Handle(r, "receipts", "order.placed", func(ctx context.Context, ev bus.Event[OrderPlaced]) error {
		got <- fmt.Sprintf("receipts: order %s, total %.2f (typed handler)", ev.Data.OrderID, ev.Data.Total)
		return nil
	}))
	check(r.AddHandler("audit", "order.>", func(ctx context.Context, msg *message.Message) error {
		got <- fmt.Sprintf("audit:    %s %s (wildcard order.>)", msg.Metadata.Get(bus.AttrType), msg.Payload)
		return nil
	}))
	go func() { check(r.Run(ctx)) }()
	<-r.Running()

	// A plain Watermill subscription, no router: ack each message yourself.
	msgs := must(must(b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: "shop.shipping"})).Subscribe(ctx, "order.shipped"))
	go func() {
		for msg := range msgs {
			got <- fmt.Sprintf("shipping: %s (subscriber)", msg.Payload)
			msg.Ack()
		}
	}()

	must(bus.Publish(ctx, b.Publisher(), "order.placed", OrderPlaced{OrderID: "A-17", Total: 42.5}))
	must(bus.Publish(ctx, b.Publisher(), "order.shipped", map[string]string{"orderId": "A-17", "carrier": "post"}))
	for range 4 { // order.placed: receipts and audit; order.shipped: audit and shipping
		fmt.Println(<-got)
	}
	check(r.Close())
}

func must[T any](v T, err error) T { check(err); return v }

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
