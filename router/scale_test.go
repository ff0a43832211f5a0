package router_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/router"
)

// The fast path under load (issue #8): 100,000 events through 4 handlers of
// the default stack, each with concurrency 8 (each handler its own consumer
// group, so each must see every event). Every event must be handled at least
// once by every handler; duplicates are counted, and without faults there
// must be none.
func TestHundredThousandEventsFourHandlersConcurrencyEight(t *testing.T) {
	const (
		events      = 100_000
		handlers    = 4
		concurrency = 8
		batch       = 500
		typ         = "scale.uploaded"
	)
	b, err := bus.New(bus.Config{ServiceName: "scale", Client: redistest.Client(t), StreamPrefix: redistest.Prefix(t)}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	r, err := router.New(b, router.Config{}, nil)
	require.NoError(t, err)

	type tally struct {
		seen   []atomic.Uint32 // handled count per event number
		unique atomic.Int64
		total  atomic.Int64
	}
	tallies := make([]*tally, handlers)
	for h := range tallies {
		tl := &tally{seen: make([]atomic.Uint32, events)}
		tallies[h] = tl
		err := r.AddHandler(fmt.Sprintf("h%d", h), typ, func(_ context.Context, msg *message.Message) error {
			var ev struct {
				N int `json:"n"`
			}
			if err := json.Unmarshal(msg.Payload, &ev); err != nil || ev.N < 0 || ev.N >= events {
				return fmt.Errorf("bad event %q: %v", msg.Payload, err)
			}
			tl.total.Add(1)
			if tl.seen[ev.N].Add(1) == 1 {
				tl.unique.Add(1)
			}
			return nil
		}, router.WithConcurrency(concurrency))
		require.NoError(t, err)
	}
	routertest.Start(t, r)

	pub := b.Publisher()
	for start := 0; start < events; start += batch {
		msgs := make([]*message.Message, batch)
		for i := range msgs {
			msgs[i] = message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"n":%d}`, start+i))
		}
		require.NoError(t, pub.Publish(typ, msgs...))
	}

	allSeen := func() bool {
		for _, tl := range tallies {
			if tl.unique.Load() < events {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(10 * time.Minute) // a bound against a hang, not a timing claim
	for !allSeen() {
		if time.Now().After(deadline) {
			for h, tl := range tallies {
				t.Errorf("handler h%d: %d of %d events handled", h, tl.unique.Load(), events)
			}
			t.FailNow()
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, r.Close())

	for h, tl := range tallies {
		dups := tl.total.Load() - tl.unique.Load()
		t.Logf("handler h%d: %d events handled, %d duplicates", h, tl.unique.Load(), dups)
		assert.EqualValues(t, events, tl.unique.Load(), "handler h%d missed events", h)
		assert.Zero(t, dups, "handler h%d: duplicates without any fault", h)
	}
	stats := r.Stats()
	for h := range handlers {
		st := stats[fmt.Sprintf("h%d", h)]
		assert.EqualValues(t, 0, st.Failed, "h%d failed", h)
		assert.EqualValues(t, 0, st.DeadLettered, "h%d dead-lettered", h)
	}
}
