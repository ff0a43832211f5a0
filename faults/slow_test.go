//go:build faults

package faults

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
)

// TestSlowHandlerIsNotClaimed runs a handler slower than ClaimMinIdle (2.5 s
// against 600 ms) beside a second consumer of the same group that claims
// every 100 ms. The first consumer's keepalive resets the idle time of what
// it holds (the message being handled and the one read ahead of it), so the
// second never takes them: no duplicates.
func TestSlowHandlerIsNotClaimed(t *testing.T) {
	x := newRow(t, "slow handler (2.5 s) vs ClaimMinIdle 600 ms, second consumer claiming every 100 ms")
	prefix := redistest.Prefix(t)
	const (
		topic = "fault.slow"
		group = "slow"
		n     = 2
		work  = 2500 * time.Millisecond
	)
	// Two clients, as two instances of a service would have.
	slowBus, key, tr := setup(t, redistest.Client(t), prefix, topic, nil)
	otherBus := newBus(t, redistest.Client(t), prefix, nil)
	cfg := func(consumer string) bus.SubscriberConfig {
		return bus.SubscriberConfig{
			ConsumerGroup: group,
			Consumer:      consumer,
			BlockTime:     50 * time.Millisecond,
			ClaimInterval: 100 * time.Millisecond,
			ClaimMinIdle:  600 * time.Millisecond,
			CloseTimeout:  2 * time.Second,
		}
	}

	var (
		mu  sync.Mutex
		who = map[string][]string{} // event id -> consumers (and delivery counts) that got it
	)
	handler := func(consumer string, ch <-chan *message.Message, delay time.Duration) {
		for msg := range ch {
			tr.handle(msg.UUID, msg.Metadata.Get(bus.MetaStreamID))
			mu.Lock()
			who[msg.UUID] = append(who[msg.UUID], consumer+"#"+msg.Metadata.Get(bus.MetaDelivery))
			mu.Unlock()
			select {
			case <-time.After(delay): // the slow work
			case <-msg.Context().Done():
			}
			msg.Ack()
		}
	}

	_, slowCh := subscribe(t, slowBus, cfg("slow"), topic)
	go handler("slow", slowCh, work)
	for i := range n {
		msg := message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"n":%d}`, i))
		err := slowBus.Publisher().Publish(topic, msg)
		tr.published(msg.UUID, err)
		require.NoError(t, err)
	}
	// The slow consumer holds both (one in its handler, one read ahead).
	require.Eventually(t, func() bool {
		p, err := slowBus.Client().XPending(context.Background(), key, group).Result()
		return err == nil && p.Consumers["slow"] == n
	}, 5*time.Second, 10*time.Millisecond)
	startOther := time.Now()
	_, otherCh := subscribe(t, otherBus, cfg("other"), topic)
	go handler("other", otherCh, 0)

	missing := tr.waitAllHandled(n*work + 5*time.Second)
	assert.Empty(t, missing)
	assert.Zero(t, waitNoPending(t, slowBus.Client(), key, group, 3*time.Second), "entries left pending")
	tr.fill(x)
	mu.Lock()
	defer mu.Unlock()
	for id, got := range who {
		assert.Equal(t, []string{"slow#1"}, got, "event %s: want it handled once, by the slow consumer", id)
	}
	assert.Zero(t, x.Duplicated, "an entry was claimed while its handler still worked on it")
	x.Notes = fmt.Sprintf("%d events held by the slow consumer for %s (%s in all); the other consumer claimed for %s and got nothing",
		n, work, n*work, time.Since(startOther).Round(100*time.Millisecond))
}

// TestSlowHandlerPatternOverManyStreams is the slow-handler test for a pattern
// subscription over more streams than BatchSize: one XREADGROUP names every
// stream with COUNT max(1, room/streams), so it can return more entries than
// BatchSize. What the slow consumer read must stay in its hands (kept fresh
// by its keepalive) until it handles it: no event is handled twice. (The
// other consumer may read, as delivery 1, what the slow one did not read.)
func TestSlowHandlerPatternOverManyStreams(t *testing.T) {
	x := newRow(t, "slow handler (700 ms), pattern over 6 streams, BatchSize 2, ClaimMinIdle 300 ms, second consumer claiming every 50 ms")
	prefix := redistest.Prefix(t)
	slowBus := newBus(t, redistest.Client(t), prefix, nil)
	otherBus := newBus(t, redistest.Client(t), prefix, nil)
	const (
		pattern = "fault.slowp.*"
		group   = "slowp"
		n       = 6
		work    = 700 * time.Millisecond
	)
	tr := newTracker()
	for i := range n {
		msg := message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"n":%d}`, i))
		err := slowBus.Publisher().Publish(fmt.Sprintf("fault.slowp.t%d", i), msg)
		tr.published(msg.UUID, err)
		require.NoError(t, err)
	}
	cfg := func(consumer string) bus.SubscriberConfig {
		return bus.SubscriberConfig{
			ConsumerGroup: group,
			Consumer:      consumer,
			BatchSize:     2,
			BlockTime:     50 * time.Millisecond,
			ClaimInterval: 50 * time.Millisecond,
			ClaimMinIdle:  300 * time.Millisecond,
			CloseTimeout:  2 * time.Second,
		}
	}
	var (
		mu      sync.Mutex
		who     = map[string][]string{}
		maxHeld int64
	)
	handler := func(consumer string, ch <-chan *message.Message, delay time.Duration) {
		for msg := range ch {
			tr.handle(msg.UUID, msg.Metadata.Get(bus.MetaStreamID))
			mu.Lock()
			who[msg.UUID] = append(who[msg.UUID], consumer+"#"+msg.Metadata.Get(bus.MetaDelivery))
			mu.Unlock()
			if delay > 0 {
				time.Sleep(delay)
			}
			msg.Ack()
		}
	}
	_, slowCh := subscribe(t, slowBus, cfg("slow"), pattern)
	go handler("slow", slowCh, work)
	// Wait until the slow consumer has read, then note how much it holds.
	held := func() int64 {
		var h int64
		for i := range n {
			p, err := slowBus.Client().XPending(context.Background(), slowBus.Config().StreamKey(fmt.Sprintf("fault.slowp.t%d", i)), group).Result()
			if err == nil {
				h += p.Consumers["slow"]
			}
		}
		return h
	}
	require.Eventually(t, func() bool { return held() > 0 }, 5*time.Second, 5*time.Millisecond)
	time.Sleep(100 * time.Millisecond) // its first read is complete
	maxHeld = held()
	_, otherCh := subscribe(t, otherBus, cfg("other"), pattern)
	go handler("other", otherCh, 0)

	missing := tr.waitAllHandled(n*work + 5*time.Second)
	assert.Empty(t, missing)
	time.Sleep(n * work) // let the slow consumer finish what it holds
	tr.fill(x)
	mu.Lock()
	defer mu.Unlock()
	claimed, byOther := 0, 0
	for id, got := range who {
		// The other consumer may read what the slow one has not read yet,
		// but must never take what the slow one holds.
		if !assert.Len(t, got, 1, "event %s handled more than once: %v", id, got) {
			claimed++
			continue
		}
		assert.Contains(t, []string{"slow#1", "other#1"}, got[0], "event %s", id)
		if got[0] == "other#1" {
			byOther++
		}
	}
	// COUNT applies per stream (Redis 7 has no cap across streams), so one
	// read holds at most max(BatchSize, streams with new entries); what it
	// holds is kept fresh, which the duplicate check above proves.
	assert.LessOrEqual(t, maxHeld, int64(max(2, n)), "one read holds at most max(BatchSize, streams)")
	x.Notes = fmt.Sprintf("slow consumer read %d entries at once (BatchSize 2, 6 streams: COUNT is per stream); %d events taken from it by the other consumer while it held them; %d read first by the other",
		maxHeld, claimed, byOther)
}
