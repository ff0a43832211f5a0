package bench_test

import (
	"context"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bus"
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
	if err := b.Publisher().Publish(evType, message.NewMessage(watermill.NewUUID(), payload)); err != nil {
		t.Fatal(err)
	}
	key := b.Config().StreamKey(evType)
	if err := client.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: busFields(evType)}).Err(); err != nil {
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
	for _, s := range e2eSetups {
		t.Run(s.name, func(t *testing.T) {
			r, c := s.setup(t, 250) // more than one bus batch
			runUntil(t, r, c)
		})
	}
}

func TestLatencySetupsDeliver(t *testing.T) {
	for _, s := range latSetups {
		t.Run(s.name, func(t *testing.T) {
			lat := roundTrips(t, s.setup, 20, func() {})
			for i, d := range lat {
				if d <= 0 {
					t.Errorf("round trip %d: %v", i, d)
				}
			}
		})
	}
}

func TestPatternSetupDelivers(t *testing.T) {
	r, c, admin, name := setupPattern(t, 500, 50)
	x := start(r)
	x.wait(t, c)
	conns := connCount(t, admin, name)
	x.stop(t)
	if conns == 0 {
		t.Errorf("no connection named %s seen: CLIENT SETNAME not applied?", name)
	}
	t.Logf("pattern over 50 streams held %d connections", conns)
}
