package gateway

import (
	"context"
	"fmt"
	"testing"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// BenchmarkDispatchNotAddressed measures what the hub pays, per connected
// stream and push-stream entry, for entries addressed to nobody on this
// gateway: every batch is offered to every stream (hub.dispatch → push →
// Client.Wants). docs/scale.md feeds this figure ("ns per stream and entry")
// into its simulation: with C streams per gateway and E push entries per
// second, the filter alone costs C·E times it.
func BenchmarkDispatchNotAddressed(b *testing.B) {
	for _, streams := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			h := newHub(nil, "bench$push", 0, DefaultClientBuffer, nil)
			for i := range streams {
				c := newClient(Principal{User: fmt.Sprintf("u%d", i), Rooms: []string{fmt.Sprintf("r%d", i%100)}}, []string{fmt.Sprintf("r%d", i%100)})
				h.clients[c] = newSendQueue(DefaultClientBuffer)
			}
			// One XREAD's worth of entries, each for a user or a room
			// that no stream here has.
			batch := make([]pushFrame, hubReadCount)
			for i := range batch {
				f := pushFrame{frame: &frame{id: streamID{ms: uint64(i + 1)}}}
				if i%2 == 0 {
					f.user = fmt.Sprintf("elsewhere%d", i)
				} else {
					f.room = fmt.Sprintf("elsewhere%d", i)
				}
				batch[i] = f
			}
			b.ResetTimer()
			for b.Loop() {
				h.dispatch(batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(streams*len(batch)), "ns/stream-entry")
		})
	}
}

// BenchmarkRenderPushEntry measures the gateway's cost per push-stream entry
// it reads, whoever it is for: decoding the entry a bus publisher wrote and
// rendering its SSE frame once (docs/scale.md, "decode per entry").
func BenchmarkRenderPushEntry(b *testing.B) {
	rdb := redistest.Client(b)
	bc := bus.Config{ServiceName: "gw-bench", Client: rdb, StreamPrefix: redistest.Prefix(b)}
	bs, err := bus.New(bc, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	defer bs.Close()
	ctx := context.Background()
	type uploaded struct {
		PhotoID string `json:"photoId"`
		OwnerID string `json:"ownerId"`
		Size    int    `json:"size"`
		Path    string `json:"path"`
	}
	if _, err := bus.Publish(ctx, bs.Publisher(), "photo.processing.completed",
		uploaded{PhotoID: "p1", OwnerID: "u1", Size: 123456, Path: "/photos/2026/12/04/original.jpg"},
		bus.WithSubject("p1"), bus.WithUser("u1")); err != nil {
		b.Fatal(err)
	}
	xs, err := rdb.XRange(ctx, bc.PushKey(), "-", "+").Result()
	if err != nil || len(xs) != 1 {
		b.Fatalf("push stream: %d entries, %v", len(xs), err)
	}
	sid, err := parseStreamID(xs[0].ID)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := renderPushEntry(xs[0], sid); err != nil {
			b.Fatal(err)
		}
	}
}
