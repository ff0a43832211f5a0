//go:build faults

package faults

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/middleware"
	"github.com/shared-infra/eventbus/router"
)

// poison is a hand-written entry that is not a valid event.
type poison struct {
	name   string
	values func(topic string) []any
}

var poisons = []poison{
	{"garbage", func(string) []any { return []any{"garbage", "1"} }},
	{"no id, no source", func(topic string) []any {
		return []any{"type", topic, "specversion", "1.0", "data", `{"n":0}`}
	}},
	{"oversized (2 MiB, attributes valid)", func(topic string) []any {
		return append(validAttrs(topic), "data", `"`+strings.Repeat("x", 2<<20)+`"`)
	}},
	{"type of another stream", func(string) []any {
		return append(validAttrs("other.type"), "data", `{"n":0}`)
	}},
	{"invalid type", func(string) []any {
		return append(validAttrs("Not..Valid"), "data", `{"n":0}`)
	}},
	{"JSON data that does not parse (datacontenttype application/json)", func(topic string) []any {
		return append(validAttrs(topic), "data", `{"broken":`)
	}},
	{"watermill-redisstream entry with broken metadata", func(string) []any {
		return []any{"_watermill_message_uuid", watermill.NewUUID(), "payload", "x", "metadata", "\xff\x00not msgpack"}
	}},
}

func validAttrs(typ string) []any {
	return []any{"id", watermill.NewUUID(), "type", typ, "source", "hand", "specversion", "1.0",
		"time", time.Now().UTC().Format(time.RFC3339Nano), "datacontenttype", "application/json"}
}

// TestPoisonEntries interleaves hand-written invalid entries (raw XADD) with
// valid events. Consumption never stops, every valid event is delivered, and
// every poison entry is delivered once as a message for which bus.IsMalformed
// is true (what the router dead-letters).
func TestPoisonEntries(t *testing.T) {
	x := newRow(t, "poison entries (raw XADD) among valid events")
	client := redistest.Client(t)
	const topic = "fault.poison"
	b, key, tr := setup(t, client, redistest.Prefix(t), topic, nil)

	cfg := bus.SubscriberConfig{ConsumerGroup: "poison", BlockTime: 20 * time.Millisecond, CloseTimeout: 2 * time.Second}
	_, ch := subscribe(t, b, cfg, topic)

	var (
		mu          sync.Mutex
		poisonIDs   = map[string]string{} // stream id -> poison name
		seen        = map[string][]string{}
		validBad    []string // valid events delivered as malformed
		closedEarly bool
	)
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for msg := range ch {
			sid := msg.Metadata.Get(bus.MetaStreamID)
			reason, bad := bus.IsMalformed(msg)
			mu.Lock()
			if name, ok := poisonIDs[sid]; ok {
				seen[sid] = append(seen[sid], fmt.Sprintf("%s: malformed=%v %q", name, bad, reason))
				mu.Unlock()
				tr.handle("poison:"+sid, sid)
			} else {
				if bad {
					validBad = append(validBad, msg.UUID+": "+reason)
				}
				mu.Unlock()
				tr.handle(msg.UUID, sid)
			}
			msg.Ack()
		}
		mu.Lock()
		closedEarly = true
		mu.Unlock()
	}()

	const valid = 60
	p := 0
	for i := range valid {
		if i%10 == 5 {
			// Interleave the poison, one kind after another, twice round.
			for range 2 {
				pz := poisons[p%len(poisons)]
				p++
				mu.Lock() // record the id before the subscriber can see the entry
				id, err := client.XAdd(t.Context(), &redis.XAddArgs{Stream: key, Values: pz.values(topic)}).Result()
				if err == nil {
					poisonIDs[id] = pz.name
				}
				mu.Unlock()
				tr.published("poison:"+id, err)
				require.NoError(t, err)
			}
		}
		msg := message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"n":%d}`, i))
		err := b.Publisher().Publish(topic, msg)
		tr.published(msg.UUID, err)
		require.NoError(t, err)
	}

	missing := tr.waitAllHandled(10 * time.Second)
	lost := tr.fill(x)
	assert.Empty(t, missing, "entries never delivered (consumption stopped?)")

	mu.Lock()
	defer mu.Unlock()
	assert.False(t, closedEarly, "the subscription's channel closed")
	assert.Empty(t, validBad, "valid events delivered as malformed")
	notMalformed := 0
	for id, name := range poisonIDs {
		got := seen[id]
		if !assert.Len(t, got, 1, "poison %q (%s) delivered %d times", name, id, len(got)) {
			continue
		}
		if !assert.Contains(t, got[0], "malformed=true", "poison %q delivered as a valid event: %s", name, got[0]) {
			notMalformed++
		}
	}
	assert.Zero(t, waitNoPending(t, client, key, cfg.ConsumerGroup, 3*time.Second), "entries left pending")
	x.Notes = fmt.Sprintf("%d valid + %d poison entries (%d kinds); %d poison entries delivered NOT marked malformed; the router's dead-lettering: next row",
		valid, len(poisonIDs), len(poisons), notMalformed)
	_ = lost
}

// TestPoisonDeadLetteredByRouter runs the same mix through a router handler:
// every valid event reaches the handler, and every poison entry lands in the
// dead-letter stream (with its stream id and the malformed reason) without
// reaching the handler; nothing stays pending.
func TestPoisonDeadLetteredByRouter(t *testing.T) {
	x := newRow(t, "poison entries through the router: dead-lettered")
	client := redistest.Client(t)
	const topic = "fault.poisonr"
	b, key, tr := setup(t, client, redistest.Prefix(t), topic, nil)

	r, err := router.New(b, router.Config{
		Retry:          middleware.Retry{MaxAttempts: 2, InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond},
		HandlerTimeout: 5 * time.Second,
		CloseTimeout:   3 * time.Second,
		Subscriber:     bus.SubscriberConfig{BlockTime: 20 * time.Millisecond},
	}, nil)
	require.NoError(t, err)
	var (
		mu        sync.Mutex
		poisonIDs = map[string]string{} // stream id -> poison name
		toHandler []string              // poison entries the handler saw
	)
	require.NoError(t, r.AddHandler("sink", topic, func(_ context.Context, msg *message.Message) error {
		sid := msg.Metadata.Get(bus.MetaStreamID)
		mu.Lock()
		name, isPoison := poisonIDs[sid]
		if isPoison {
			toHandler = append(toHandler, name)
		}
		mu.Unlock()
		if !isPoison {
			tr.handle(msg.UUID, sid)
		}
		return nil
	}))
	routertest.Start(t, r)

	const valid = 30
	for i := range valid {
		if i%5 == 2 {
			pz := poisons[(i/5)%len(poisons)]
			mu.Lock()
			id, err := client.XAdd(t.Context(), &redis.XAddArgs{Stream: key, Values: pz.values(topic)}).Result()
			if err == nil {
				poisonIDs[id] = pz.name
			}
			mu.Unlock()
			require.NoError(t, err)
			tr.published("poison:"+id, nil)
		}
		msg := message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"n":%d}`, i))
		err := b.Publisher().Publish(topic, msg)
		tr.published(msg.UUID, err)
		require.NoError(t, err)
	}

	// Dead letters, by the stream id of the entry they came from.
	var dead map[string]string
	deadline := time.Now().Add(5 * time.Second)
	for {
		entries, err := client.XRange(t.Context(), b.Config().DeadLetterKey(), "-", "+").Result()
		require.NoError(t, err)
		dead = map[string]string{}
		for _, e := range entries {
			sid, _ := e.Values[bus.DLQFieldStreamID].(string)
			reason, _ := e.Values[bus.DLQFieldReason].(string)
			dead[sid] = reason
		}
		if len(dead) >= len(poisonIDs) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for sid := range dead {
		tr.handle("poison:"+sid, sid) // a dead letter is the poison entry's handling
	}
	missing := tr.waitAllHandled(2 * time.Second)
	tr.fill(x)
	assert.Empty(t, missing, "valid events not handled or poison entries not dead-lettered")

	mu.Lock()
	defer mu.Unlock()
	notDead := 0
	for sid, name := range poisonIDs {
		if _, ok := dead[sid]; !assert.True(t, ok, "poison %q (%s) was not dead-lettered", name, sid) {
			notDead++
		}
	}
	assert.Empty(t, toHandler, "poison entries reached the handler")
	assert.Zero(t, waitNoPending(t, client, key, r.ConsumerGroup("sink"), 3*time.Second), "entries left pending")
	x.Notes = fmt.Sprintf("%d valid + %d poison; %d dead-lettered, %d not; %d poison entries reached the handler (%v)",
		valid, len(poisonIDs), len(dead), notDead, len(toHandler), toHandler)
}
