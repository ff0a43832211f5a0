package bus_test

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
)

type PhotoUploaded struct {
	PhotoID string `json:"photoId"`
	OwnerID string `json:"ownerId"`
}

// Publish a typed event and receive it through a pattern subscription.
func Example() {
	opt, err := redis.ParseURL(redistest.URL())
	if err != nil {
		fmt.Println(err)
		return
	}
	client := redis.NewClient(opt)
	defer client.Close()
	prefix := fmt.Sprintf("example:%d:", time.Now().UnixNano())
	defer cleanup(client, prefix)

	b, err := bus.New(bus.Config{ServiceName: "photo-api", Client: client, StreamPrefix: prefix}, watermill.NopLogger{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()

	sub, _ := b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: "example"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	events, err := sub.Subscribe(ctx, "photo.*")
	if err != nil {
		fmt.Println(err)
		return
	}

	_, err = bus.Publish(ctx, b.Publisher(), "photo.uploaded", PhotoUploaded{PhotoID: "p1", OwnerID: "u1"},
		bus.WithSubject("p1"), bus.WithUser("u1"))
	if err != nil {
		fmt.Println(err)
		return
	}

	msg := <-events
	ev, err := bus.Decode[PhotoUploaded](msg)
	if err != nil {
		fmt.Println(err)
		return
	}
	msg.Ack()
	fmt.Println(ev.Type, ev.Source, ev.Subject, ev.User, ev.Data.PhotoID)

	// A bad event type is refused before anything is written.
	_, err = bus.Publish(ctx, b.Publisher(), "Photo..Uploaded", PhotoUploaded{})
	fmt.Println(err)
	// Output:
	// photo.uploaded photo-api p1 u1 p1
	// invalid event type "Photo..Uploaded": token "Photo" has upper case; tokens must match [a-z0-9_-]+
}

func cleanup(c *redis.Client, prefix string) {
	ctx := context.Background()
	keys, _ := c.Keys(ctx, prefix+"*").Result()
	if len(keys) > 0 {
		c.Del(ctx, keys...)
	}
}

// A pattern subscription (docs/wildcards.md): "photo.>" receives every type
// under photo, however many tokens follow.
func ExampleSubscriber_Subscribe_pattern() {
	b, closeAll := exampleBus("photo-svc")
	defer closeAll()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	sub, _ := b.NewSubscriber(bus.SubscriberConfig{ConsumerGroup: "photo-svc.thumbnailer"})
	msgs, err := sub.Subscribe(ctx, "photo.>")
	if err != nil {
		panic(err)
	}
	for _, typ := range []string{"photo.uploaded", "photo.processing.completed", "video.uploaded"} {
		if _, err := bus.Publish(ctx, b.Publisher(), typ, PhotoUploaded{PhotoID: "p1"}); err != nil {
			panic(err)
		}
	}
	seen := 0
	for msg := range msgs {
		// msg.Metadata.Get(bus.MetaTopic) is the event type it was read from
		fmt.Println(msg.Metadata.Get(bus.MetaTopic))
		msg.Ack()
		if seen++; seen == 2 {
			cancel() // ends the subscription: msgs is closed
		}
	}
	// Unordered output:
	// photo.uploaded
	// photo.processing.completed
}
