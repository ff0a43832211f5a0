package bench_test

import (
	"context"
	"slices"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/bench"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// These tests check that the benchmarks compare like with like and that
// every setup really delivers; `make bench` skips them (-run '^$'),
// `go test ./bench/` runs them.

// TestFieldsMatchBus checks that the go-redis baseline writes exactly the
// fields the bus Publisher writes.
func TestFieldsMatchBus(t *testing.T) {
	ctx := context.Background()
	client, prefix := redistest.Client(t), redistest.Prefix(t)
	b := newBus(t, client, prefix)
	if err := b.Publisher().Publish(bench.EventType, message.NewMessage(watermill.NewUUID(), bench.Payload)); err != nil {
		t.Fatal(err)
	}
	key := b.Config().StreamKey(bench.EventType)
	if err := client.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: bench.BusFields(bench.EventType)}).Err(); err != nil {
		t.Fatal(err)
	}
	entries, err := client.XRange(ctx, key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("%d entries, want 2", len(entries))
	}
	byBus, byHand := entries[0].Values, entries[1].Values
	if fieldNames(byBus) != fieldNames(byHand) {
		t.Errorf("bus writes fields %s, the go-redis baseline %s", fieldNames(byBus), fieldNames(byHand))
	}
	for _, k := range []string{bus.AttrType, bus.AttrSource, bus.AttrSpecVersion, bus.AttrDataContentType, bus.FieldData} {
		if byBus[k] != byHand[k] {
			t.Errorf("field %s: bus %q, baseline %q", k, byBus[k], byHand[k])
		}
	}
	// And the bus decodes the baseline's entry as a valid event.
	msg, _ := bus.Marshaller{}.Unmarshal(byHand)
	if reason, bad := bus.IsMalformed(msg); bad {
		t.Errorf("baseline entry is malformed to the bus: %s", reason)
	}
}

func TestEndToEndSetupsDeliver(t *testing.T) {
	for _, name := range bench.EndToEndVariants {
		t.Run(name, func(t *testing.T) {
			c, err := bench.NewEndToEnd(t.Context(), target(t), name, 250) // more than one bus batch
			must(t, err)
			if m := consume(t, c); m.Events != 250 || m.Elapsed <= 0 || m.Conns == 0 {
				t.Errorf("measurement %+v, want 250 events, a time and connections", m)
			}
		})
	}
}

func TestLatencySetupsDeliver(t *testing.T) {
	for _, name := range bench.LatencyVariants {
		t.Run(name, func(t *testing.T) {
			lat := roundTrips(t, name, 20, func() {})
			for i, d := range lat {
				if d <= 0 {
					t.Errorf("round trip %d: %v", i, d)
				}
			}
		})
	}
}

func TestPatternSetupDelivers(t *testing.T) {
	c, err := bench.NewPattern(t.Context(), target(t), 50, 500)
	must(t, err)
	m := consume(t, c)
	if m.Conns == 0 {
		t.Error("no named connection seen: CLIENT SETNAME not applied?")
	}
	t.Logf("pattern over 50 streams held %d connections", m.Conns)
}

func TestPublishersPublish(t *testing.T) {
	for _, name := range slices.Concat(bench.PublishVariants, bench.BatchVariants) {
		t.Run(name, func(t *testing.T) {
			tg := target(t)
			p, err := bench.NewPublisher(t.Context(), tg, name)
			must(t, err)
			defer p.Close()
			must(t, p.Publish(t.Context()))
			n, err := redistest.Client(t).XLen(t.Context(), tg.Prefix()+bench.EventType).Result()
			must(t, err)
			want := int64(p.PerCall)
			if name == bench.PublishBus || name == bench.PublishBusBatch {
				want++ // the set-up's registering publish
			}
			if n != want {
				t.Errorf("stream holds %d entries after one call, want %d", n, want)
			}
		})
	}
}
