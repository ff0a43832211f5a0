package bus_test

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/shared-infra/eventbus/bus"
)

// The snippets of docs/replay-and-delay.md (compiled, not run).
func ExampleWithDelay() {
	var b *bus.Bus // from bus.New
	ctx := context.Background()

	// Deliver in 10 minutes (or at a time: bus.WithDeliverAt(t)).
	id, err := bus.Publish(ctx, b.Publisher(), "photo.retry",
		PhotoUploaded{PhotoID: "p-42"}, bus.WithDelay(10*time.Minute))
	if err != nil {
		return
	}
	// Changed our mind.
	_ = b.CancelScheduled(ctx, "photo.retry", id)
}

func ExampleBus_ResetGroup() {
	var b *bus.Bus // from bus.New
	ctx := context.Background()

	// The thumbnail handler processes the last two hours again.
	resets, err := b.ResetGroup(ctx, "photo-worker.thumbnail",
		bus.ReplayFrom{Time: time.Now().Add(-2 * time.Hour)}, bus.ResetGroupOptions{})
	if err != nil {
		return // bus.ErrBeforeRetention: those events were trimmed
	}
	for _, r := range resets {
		_ = r.Redeliver // per stream: how many events it will see again
	}
}

func ExampleBus_ReplayInto() {
	var b *bus.Bus // from bus.New
	ctx := context.Background()

	// Feed one hour of uploads to a function; no live group moves.
	n, err := b.ReplayInto(ctx, bus.ReplayRange{
		Types: []string{"photo.uploaded"},
		From:  bus.ReplayFrom{Time: time.Now().Add(-2 * time.Hour)},
		To:    time.Now().Add(-time.Hour),
	}, func(msg *message.Message) error {
		ev, err := bus.Decode[PhotoUploaded](msg)
		if err != nil {
			return err
		}
		_ = ev.Data.PhotoID // reindex it, for instance
		return nil
	})
	_, _ = n, err
}
