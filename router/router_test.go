package router_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
	"github.com/shared-infra/eventbus/internal/routertest"
	"github.com/shared-infra/eventbus/router"
)

type photo struct {
	PhotoID string `json:"photoId"`
	N       int    `json:"n"`
}

func newBus(t *testing.T, prefix string, mutate ...func(*bus.Config)) *bus.Bus {
	t.Helper()
	cfg := bus.Config{ServiceName: "svc", Client: redistest.Client(t), StreamPrefix: prefix}
	for _, m := range mutate {
		m(&cfg)
	}
	b, err := bus.New(cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func publishN(t *testing.T, b *bus.Bus, typ string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		id, err := bus.Publish(context.Background(), b.Publisher(), typ, photo{PhotoID: fmt.Sprint("p", i), N: i})
		require.NoError(t, err)
		ids[i] = id
	}
	return ids
}

// idSet records event ids and how often each was seen.
type idSet struct {
	mu   sync.Mutex
	seen map[string]int
}

func newIDSet() *idSet { return &idSet{seen: map[string]int{}} }
func (s *idSet) add(id string) {
	s.mu.Lock()
	s.seen[id]++
	s.mu.Unlock()
}
func (s *idSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}
func (s *idSet) dups() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := 0
	for _, n := range s.seen {
		d += n - 1
	}
	return d
}

func TestIsolatedHandlersRetryDeadLetterAndRedrive(t *testing.T) {
	b := newBus(t, redistest.Prefix(t))
	r, err := router.New(b, routertest.FastConfig(), nil)
	require.NoError(t, err)
	healthy := newIDSet()
	var failing atomic.Int64
	require.NoError(t, router.Handle(r, "healthy", "photo.uploaded", func(ctx context.Context, ev bus.Event[photo]) error {
		healthy.add(ev.ID)
		return nil
	}))
	fixed := atomic.Bool{}
	var afterFix = newIDSet()
	require.NoError(t, router.Handle(r, "flaky", "photo.uploaded", func(ctx context.Context, ev bus.Event[photo]) error {
		if fixed.Load() {
			afterFix.add(ev.ID)
			return nil
		}
		failing.Add(1)
		return errors.New("storage unavailable")
	}))
	routertest.Start(t, r)
	const n = 20
	ids := publishN(t, b, "photo.uploaded", n)

	dlq := b.DeadLetters()
	require.Eventually(t, func() bool { l, _ := dlq.Len(context.Background()); return l == n }, 20*time.Second, 20*time.Millisecond)
	assert.Equal(t, n, healthy.len(), "the healthy handler sees every event")
	assert.Zero(t, healthy.dups(), "exactly once while healthy")
	assert.EqualValues(t, 3*n, failing.Load(), "each event tried MaxAttempts times")

	letters, err := dlq.List(context.Background(), "-", 100)
	require.NoError(t, err)
	require.Len(t, letters, n)
	for _, d := range letters {
		assert.Equal(t, "storage unavailable", d.Reason)
		assert.Equal(t, "flaky", d.Handler)
		assert.Equal(t, "svc.flaky", d.Group)
		assert.Equal(t, "photo.uploaded", d.Topic)
		assert.Equal(t, 3, d.Attempts)
		assert.Contains(t, ids, d.Fields["id"])
	}
	// The stat is counted once the dead-letter write has returned, which
	// may be just after the entry is visible in the stream.
	require.Eventually(t, func() bool { return r.Stats()["flaky"].DeadLettered == n }, 5*time.Second, 10*time.Millisecond)
	st := r.Stats()
	assert.EqualValues(t, 2*n, st["flaky"].Retried)
	assert.EqualValues(t, 3*n, st["flaky"].Failed)
	assert.EqualValues(t, n, st["healthy"].Acked)
	assert.Zero(t, st["healthy"].Failed)

	// Redrive after the fix: the flaky handler gets them back, the healthy one does not see them again.
	fixed.Store(true)
	moved, err := dlq.Redrive(context.Background(), bus.RedriveFilter{Type: "photo.uploaded"})
	require.NoError(t, err)
	assert.Equal(t, n, moved)
	require.Eventually(t, func() bool { return afterFix.len() == n }, 10*time.Second, 20*time.Millisecond)
	l, _ := dlq.Len(context.Background())
	assert.Zero(t, l)
	time.Sleep(200 * time.Millisecond) // let the healthy group pass over the redriven entries
	assert.Zero(t, healthy.dups(), "a redrive is addressed to the failing handler's group only")
}

func TestHardTimeoutFailsAHandlerThatIgnoresItsContext(t *testing.T) {
	b := newBus(t, redistest.Prefix(t))
	cfg := routertest.FastConfig()
	cfg.HandlerTimeout = 150 * time.Millisecond
	cfg.Retry.MaxAttempts = 1
	r, err := router.New(b, cfg, nil)
	require.NoError(t, err)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	require.NoError(t, r.AddHandler("sleepy", "photo.slow", func(ctx context.Context, msg *message.Message) error {
		<-release // ignores ctx entirely
		return nil
	}))
	routertest.Start(t, r)
	publishN(t, b, "photo.slow", 1)
	require.Eventually(t, func() bool { l, _ := b.DeadLetters().Len(context.Background()); return l == 1 }, 5*time.Second, 10*time.Millisecond,
		"failed at the deadline although the handler never returned")
	d, err := b.DeadLetters().List(context.Background(), "-", 1)
	require.NoError(t, err)
	assert.Contains(t, d[0].Reason, "handler timed out after 150ms")
}

func TestPanickingHandlerDoesNotStopTheRouter(t *testing.T) {
	b := newBus(t, redistest.Prefix(t))
	cfg := routertest.FastConfig()
	cfg.Retry.MaxAttempts = 1
	r, err := router.New(b, cfg, nil)
	require.NoError(t, err)
	handled := newIDSet()
	require.NoError(t, router.Handle(r, "panicky", "photo.uploaded", func(ctx context.Context, ev bus.Event[photo]) error {
		if ev.Data.N == 0 {
			panic("boom")
		}
		handled.add(ev.ID)
		return nil
	}))
	routertest.Start(t, r)
	publishN(t, b, "photo.uploaded", 5)
	require.Eventually(t, func() bool { return handled.len() == 4 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { l, _ := b.DeadLetters().Len(context.Background()); return l == 1 }, 5*time.Second, 10*time.Millisecond)
	d, _ := b.DeadLetters().List(context.Background(), "-", 1)
	assert.Contains(t, d[0].Reason, "boom")
}

func TestTraceAndCorrelationAcrossThreeHops(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	b := newBus(t, redistest.Prefix(t), func(c *bus.Config) { c.TracerProvider = tp })
	r, err := router.New(b, routertest.FastConfig(), nil)
	require.NoError(t, err)

	type seen struct {
		ev      bus.Event[photo]
		traceID trace.TraceID
	}
	got := make(chan seen, 3)
	hop := func(next string) func(ctx context.Context, ev bus.Event[photo]) error {
		return func(ctx context.Context, ev bus.Event[photo]) error {
			got <- seen{ev, trace.SpanContextFromContext(ctx).TraceID()}
			if next == "" {
				return nil
			}
			_, err := bus.Publish(ctx, r.Publisher(), next, ev.Data)
			return err
		}
	}
	require.NoError(t, router.Handle(r, "hop1", "chain.a", hop("chain.b")))
	require.NoError(t, router.Handle(r, "hop2", "chain.b", hop("chain.c")))
	require.NoError(t, router.Handle(r, "hop3", "chain.c", hop("")))
	routertest.Start(t, r)

	// The publisher's own span starts the trace.
	ctx, root := tp.Tracer("test").Start(context.Background(), "upload")
	idA, err := bus.Publish(ctx, r.Publisher(), "chain.a", photo{PhotoID: "x"})
	require.NoError(t, err)
	root.End()

	var hops []seen
	for range 3 {
		select {
		case s := <-got:
			hops = append(hops, s)
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d hops arrived", len(hops))
		}
	}
	want := root.SpanContext().TraceID()
	for i, h := range hops {
		assert.Equal(t, want, h.traceID, "hop %d handler ctx carries the publisher's trace id", i+1)
		assert.Equal(t, idA, h.ev.CorrelationID, "hop %d correlation id is the first event's id", i+1)
	}
	assert.Equal(t, idA, hops[0].ev.ID)
	assert.Empty(t, hops[0].ev.CausationID)
	assert.Equal(t, hops[0].ev.ID, hops[1].ev.CausationID)
	assert.Equal(t, hops[1].ev.ID, hops[2].ev.CausationID)

	// Spans: one trace, publish → process → publish → process ... each a child of the one before.
	// A span ends after its handler or publish returns, which may be after the
	// next hop has already run: wait for all seven.
	require.Eventually(t, func() bool { return len(rec.Ended()) >= 7 }, 10*time.Second, 5*time.Millisecond)
	spans := rec.Ended()
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		assert.Equal(t, want, s.SpanContext().TraceID(), s.Name())
		byID[s.SpanContext().SpanID()] = s
	}
	var process3 sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "process chain.c" {
			process3 = s
		}
	}
	require.NotNil(t, process3)
	var chain []string
	for s := process3; s != nil; s = byID[s.Parent().SpanID()] {
		chain = append([]string{s.Name()}, chain...)
	}
	assert.Equal(t, []string{"upload", "publish chain.a", "process chain.a", "publish chain.b", "process chain.b", "publish chain.c", "process chain.c"}, chain)
}

func TestFilterAcksAndCountsSkippedEvents(t *testing.T) {
	b := newBus(t, redistest.Prefix(t))
	r, err := router.New(b, routertest.FastConfig(), nil)
	require.NoError(t, err)
	handled := newIDSet()
	require.NoError(t, router.Handle(r, "evens", "photo.uploaded", func(ctx context.Context, ev bus.Event[photo]) error {
		handled.add(ev.ID)
		return nil
	}, router.WithFilter(func(m *message.Message) bool {
		ev, err := bus.Decode[photo](m)
		return err == nil && ev.Data.N%2 == 0
	})))
	routertest.Start(t, r)
	publishN(t, b, "photo.uploaded", 10)
	require.Eventually(t, func() bool { return r.Stats()["evens"].Acked == 10 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, 5, handled.len())
	assert.EqualValues(t, 5, r.Stats()["evens"].Filtered)
	require.Eventually(t, func() bool {
		p, err := b.Client().XPending(context.Background(), b.Config().StreamKey("photo.uploaded"), "svc.evens").Result()
		return err == nil && p.Count == 0
	}, 5*time.Second, 10*time.Millisecond, "filtered events are acked")
}

func TestSchemaViolationIsDeadLetteredWithoutRetry(t *testing.T) {
	ctx := context.Background()
	b := newBus(t, redistest.Prefix(t))
	sch, err := b.Schemas().Put(ctx, "photo.uploaded", []byte(`{"type":"object","required":["photoId"],"properties":{"photoId":{"type":"string","minLength":1}}}`))
	require.NoError(t, err)
	r, err := router.New(b, routertest.FastConfig(), nil)
	require.NoError(t, err)
	var calls atomic.Int64
	require.NoError(t, r.AddHandler("strict", "photo.uploaded", func(ctx context.Context, msg *message.Message) error {
		calls.Add(1)
		return nil
	}))
	routertest.Start(t, r)
	// The router's publisher is the bus's: it refuses it...
	_, err = bus.Publish(ctx, r.Publisher(), "photo.uploaded", map[string]int{"n": 1})
	require.ErrorIs(t, err, bus.ErrSchemaViolation)
	// ...and one written past it by hand (a non-Go producer's XADD, naming
	// the schema version) is dead-lettered at once, with no retry.
	require.NoError(t, b.Client().XAdd(ctx, &redis.XAddArgs{Stream: b.Config().StreamKey("photo.uploaded"), Values: []any{
		bus.AttrID, "hand-1", bus.AttrType, "photo.uploaded", bus.AttrSource, "node", bus.AttrSpecVersion, "1.0",
		bus.AttrDataSchema, sch.URI, bus.FieldData, `{"n":1}`,
	}}).Err())
	require.Eventually(t, func() bool { l, _ := b.DeadLetters().Len(ctx); return l == 1 }, 5*time.Second, 10*time.Millisecond)
	assert.Zero(t, calls.Load())
	assert.Zero(t, r.Stats()["strict"].Retried)
	d, _ := b.DeadLetters().List(ctx, "-", 1)
	assert.Contains(t, d[0].Reason, "does not match schema "+sch.URI)
	assert.Contains(t, d[0].Reason, `missing property 'photoId'`)
}

func TestRemoveHandlerStopsItsConsumptionWhileRouterRuns(t *testing.T) {
	b := newBus(t, redistest.Prefix(t))
	r, err := router.New(b, routertest.FastConfig(), nil)
	require.NoError(t, err)
	a, c := newIDSet(), newIDSet()
	require.NoError(t, r.AddHandler("a", "photo.>", func(ctx context.Context, m *message.Message) error { a.add(m.UUID); return nil }))
	routertest.Start(t, r)
	// Added at run time.
	require.NoError(t, r.AddHandler("c", "photo.>", func(ctx context.Context, m *message.Message) error { c.add(m.UUID); return nil }))
	publishN(t, b, "photo.uploaded", 3)
	require.Eventually(t, func() bool { return a.len() == 3 && c.len() == 3 }, 10*time.Second, 10*time.Millisecond)

	require.NoError(t, r.RemoveHandler("c"))
	publishN(t, b, "photo.processing.completed", 3)
	require.Eventually(t, func() bool { return a.len() == 6 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, 3, c.len(), "a removed handler consumes nothing more")
	assert.ErrorIs(t, r.RemoveHandler("c"), router.ErrNoHandler)
	// The router survives losing handlers, even all of them.
	require.NoError(t, r.RemoveHandler("a"))
	require.NoError(t, r.AddHandler("a2", "photo.>", func(ctx context.Context, m *message.Message) error { a.add(m.UUID); return nil }))
	publishN(t, b, "photo.deleted", 1)
	require.Eventually(t, func() bool { return a.len() >= 7 }, 10*time.Second, 10*time.Millisecond)
}

func TestTwoInstancesSplitTheLoad(t *testing.T) {
	prefix := redistest.Prefix(t)
	handled := newIDSet()
	per := [2]atomic.Int64{}
	for i := range 2 {
		b := newBus(t, prefix)
		r, err := router.New(b, routertest.FastConfig(), nil)
		require.NoError(t, err)
		require.NoError(t, r.AddHandler("worker", "photo.uploaded", func(ctx context.Context, m *message.Message) error {
			handled.add(m.UUID)
			per[i].Add(1)
			time.Sleep(time.Millisecond)
			return nil
		}))
		routertest.Start(t, r)
	}
	b := newBus(t, prefix)
	const n = 400
	publishN(t, b, "photo.uploaded", n)
	require.Eventually(t, func() bool { return handled.len() == n }, 20*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	assert.Zero(t, handled.dups(), "none handled twice while both are healthy")
	assert.Positive(t, per[0].Load())
	assert.Positive(t, per[1].Load())
	t.Logf("split: %d / %d", per[0].Load(), per[1].Load())
}

func TestKilledInstanceLeavesEventsPendingForTheSurvivor(t *testing.T) {
	prefix := redistest.Prefix(t)
	bA := newBus(t, prefix)
	cfgA := routertest.FastConfig()
	cfgA.CloseTimeout = 50 * time.Millisecond // close without drain
	cfgA.Subscriber.ClaimInterval = -1
	rA, err := router.New(bA, cfgA, nil)
	require.NoError(t, err)
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	var startedA atomic.Int64
	require.NoError(t, rA.AddHandler("worker", "photo.uploaded", func(ctx context.Context, m *message.Message) error {
		startedA.Add(1)
		<-stuck
		return nil
	}, router.WithTimeout(-1)))
	ctxA, cancelA := context.WithCancel(context.Background())
	doneA := make(chan struct{})
	go func() { _ = rA.Run(ctxA); close(doneA) }()
	<-rA.Running()

	ids := publishN(t, bA, "photo.uploaded", 10)
	require.Eventually(t, func() bool { return startedA.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	cancelA() // the instance dies with events in flight and read ahead
	<-doneA
	p, err := bA.Client().XPending(context.Background(), bA.Config().StreamKey("photo.uploaded"), "svc.worker").Result()
	require.NoError(t, err)
	assert.Positive(t, p.Count, "unfinished events stay pending")

	bB := newBus(t, prefix)
	rB, err := router.New(bB, routertest.FastConfig(), nil)
	require.NoError(t, err)
	handled := newIDSet()
	require.NoError(t, rB.AddHandler("worker", "photo.uploaded", func(ctx context.Context, m *message.Message) error {
		handled.add(m.UUID)
		return nil
	}))
	routertest.Start(t, rB)
	require.Eventually(t, func() bool { return handled.len() == len(ids) }, 15*time.Second, 10*time.Millisecond,
		"the survivor claims and handles every event the dead instance left")
}

func TestMaxDeliveriesDeadLettersAPoisonThatKillsItsConsumer(t *testing.T) {
	b := newBus(t, redistest.Prefix(t))
	ctx := context.Background()
	key := b.Config().StreamKey("photo.uploaded")
	require.NoError(t, b.Client().XGroupCreateMkStream(ctx, key, "svc.worker", "0").Err())
	publishN(t, b, "photo.uploaded", 1)
	// Simulate a consumer that read it and died, four times over.
	res, err := b.Client().XReadGroup(ctx, &redis.XReadGroupArgs{Group: "svc.worker", Consumer: "dead", Streams: []string{key, ">"}, Count: 1}).Result()
	require.NoError(t, err)
	id := res[0].Messages[0].ID
	for range 3 {
		require.NoError(t, b.Client().XClaim(ctx, &redis.XClaimArgs{Stream: key, Group: "svc.worker", Consumer: "dead", Messages: []string{id}}).Err())
	}
	cfg := routertest.FastConfig()
	cfg.MaxDeliveries = 4
	cfg.Subscriber.ClaimMinIdle = 10 * time.Millisecond
	r, err := router.New(b, cfg, watermill.NopLogger{})
	require.NoError(t, err)
	var calls atomic.Int64
	require.NoError(t, r.AddHandler("worker", "photo.uploaded", func(ctx context.Context, m *message.Message) error {
		calls.Add(1)
		return nil
	}))
	routertest.Start(t, r)
	require.Eventually(t, func() bool { l, _ := b.DeadLetters().Len(ctx); return l == 1 }, 10*time.Second, 10*time.Millisecond)
	assert.Zero(t, calls.Load())
	d, _ := b.DeadLetters().List(ctx, "-", 1)
	assert.Contains(t, d[0].Reason, "delivered 5 times, the limit is 4")
	assert.Equal(t, 5, d[0].Delivery)
}

func TestCloseLeavesAnEventInFlightPending(t *testing.T) {
	b := newBus(t, redistest.Prefix(t))
	r, err := router.New(b, routertest.FastConfig(), nil)
	require.NoError(t, err)
	started := make(chan struct{})
	require.NoError(t, r.AddHandler("slow", "photo.uploaded", func(ctx context.Context, m *message.Message) error {
		close(started)
		<-ctx.Done() // a well-behaved handler stops when its context ends
		return ctx.Err()
	}))
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	<-r.Running()
	publishN(t, b, "photo.uploaded", 1)
	<-started
	require.NoError(t, r.Close())
	<-done
	l, err := b.DeadLetters().Len(context.Background())
	require.NoError(t, err)
	assert.Zero(t, l, "an event interrupted by Close is not dead-lettered")
	p, err := b.Client().XPending(context.Background(), b.Config().StreamKey("photo.uploaded"), "svc.slow").Result()
	require.NoError(t, err)
	assert.EqualValues(t, 1, p.Count, "it stays pending for another instance")
}

func TestCloseWritesTheLastAcks(t *testing.T) {
	prefix := redistest.Prefix(t)
	for range 5 {
		// The bus owns its client (RedisURL), so Bus.Close closes it.
		b, err := bus.New(bus.Config{ServiceName: "svc", RedisURL: redistest.URL(), StreamPrefix: prefix}, nil)
		require.NoError(t, err)
		r, err := router.New(b, routertest.FastConfig(), nil)
		require.NoError(t, err)
		handled := newIDSet()
		require.NoError(t, r.AddHandler("h", "photo.uploaded", func(ctx context.Context, m *message.Message) error {
			handled.add(m.UUID)
			return nil
		}))
		go func() { _ = r.Run(context.Background()) }()
		<-r.Running()
		publishN(t, b, "photo.uploaded", 20)
		require.Eventually(t, func() bool { return handled.len() == 20 }, 5*time.Second, time.Millisecond)
		require.NoError(t, r.Close())
		require.NoError(t, b.Close())
		p, err := redistest.Client(t).XPending(context.Background(), prefix+"photo.uploaded", "svc.h").Result()
		require.NoError(t, err)
		require.Zero(t, p.Count, "every handled event is acked by the time Close returns")
	}
}

func TestCloseLetsInFlightHandlersFinish(t *testing.T) {
	b := newBus(t, redistest.Prefix(t))
	r, err := router.New(b, routertest.FastConfig(), nil)
	require.NoError(t, err)
	started := make(chan struct{})
	var finished atomic.Bool
	require.NoError(t, r.AddHandler("drain", "photo.uploaded", func(ctx context.Context, m *message.Message) error {
		close(started)
		select {
		case <-time.After(300 * time.Millisecond): // work that outlives the Close call
			finished.Store(true)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}))
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	<-r.Running()
	publishN(t, b, "photo.uploaded", 1)
	<-started
	require.NoError(t, r.Close())
	<-done
	assert.True(t, finished.Load(), "the handler kept its context until it finished")
	p, err := b.Client().XPending(context.Background(), b.Config().StreamKey("photo.uploaded"), "svc.drain").Result()
	require.NoError(t, err)
	assert.Zero(t, p.Count, "what finished during the drain is acked")
	l, _ := b.DeadLetters().Len(context.Background())
	assert.Zero(t, l)
}
