package bus_test

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// The snippets of docs/replay-and-delay.md, run against Redis
// (internal/doccheck checks that they are the same code).

// exampleBus opens a bus on a unique prefix; close runs the deferred
// cleanup (bus, keys, client).
func exampleBus(service string) (b *bus.Bus, closeAll func()) {
	opt, err := redis.ParseURL(redistest.URL())
	if err != nil {
		panic(err)
	}
	client := redis.NewClient(opt)
	prefix := fmt.Sprintf("example:%s:%d:", service, time.Now().UnixNano())
	b, err = bus.New(bus.Config{ServiceName: service, Client: client, StreamPrefix: prefix}, nil)
	if err != nil {
		panic(err)
	}
	return b, func() {
		_ = b.Close()
		cleanup(client, prefix)
		_ = client.Close()
	}
}

func ExampleWithDelay() {
	b, closeAll := exampleBus("photo-worker")
	defer closeAll()
	ctx := context.Background()

	// Deliver in 10 minutes (or at a time: bus.WithDeliverAt(t)).
	id, err := bus.Publish(ctx, b.Publisher(), "photo.retry",
		PhotoUploaded{PhotoID: "p-42"}, bus.WithDelay(10*time.Minute))
	if err != nil {
		return
	}
	scheduled, _ := b.ListScheduled(ctx, "photo.retry", 10)
	fmt.Println("scheduled:", len(scheduled), b.Client().XLen(ctx, b.Config().StreamKey("photo.retry")).Val())
	// Changed our mind.
	err = b.CancelScheduled(ctx, "photo.retry", id)
	scheduled, _ = b.ListScheduled(ctx, "photo.retry", 10)
	fmt.Println("cancelled:", err, len(scheduled))
	// Output:
	// scheduled: 1 0
	// cancelled: <nil> 0
}

func ExampleBus_ResetGroup() {
	b, closeAll := exampleBus("photo-worker")
	defer closeAll()
	ctx := context.Background()
	key := b.Config().StreamKey("photo.uploaded")
	for _, p := range []string{"p1", "p2"} {
		if _, err := bus.Publish(ctx, b.Publisher(), "photo.uploaded", PhotoUploaded{PhotoID: p, OwnerID: "u1"}); err != nil {
			panic(err)
		}
	}
	// The handler's group has read everything ("$": from the end).
	if err := b.Client().XGroupCreate(ctx, key, "photo-worker.thumbnail", "$").Err(); err != nil {
		panic(err)
	}

	// The thumbnail handler processes the last two hours again.
	resets, err := b.ResetGroup(ctx, "photo-worker.thumbnail",
		bus.ReplayFrom{Time: time.Now().Add(-2 * time.Hour)}, bus.ResetGroupOptions{})
	if err != nil {
		return // bus.ErrBeforeRetention: those events were trimmed
	}
	for _, r := range resets {
		_ = r.Redeliver // per stream: how many events it will see again
		fmt.Println(r.Type, r.Redeliver)
	}
	// Output:
	// photo.uploaded 2
}

func ExampleBus_ReplayInto() {
	b, closeAll := exampleBus("search")
	defer closeAll()
	ctx := context.Background()
	for _, p := range []string{"p1", "p2"} {
		if _, err := bus.Publish(ctx, b.Publisher(), "photo.uploaded", PhotoUploaded{PhotoID: p, OwnerID: "u1"}); err != nil {
			panic(err)
		}
	}

	// Feed the last hour of uploads to a function; no live group moves.
	n, err := b.ReplayInto(ctx, bus.ReplayRange{
		Types: []string{"photo.uploaded"},
		From:  bus.ReplayFrom{Time: time.Now().Add(-time.Hour)},
		To:    time.Now(),
	}, func(msg *message.Message) error {
		ev, err := bus.Decode[PhotoUploaded](msg)
		if err != nil {
			return err
		}
		_ = ev.Data.PhotoID // reindex it, for instance
		fmt.Println("reindex", ev.Data.PhotoID)
		return nil
	})
	fmt.Println(n, err)
	// Output:
	// reindex p1
	// reindex p2
	// 2 <nil>
}
