package bench_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/shared-infra/eventbus/bench"
	"github.com/shared-infra/eventbus/bus"
	"github.com/shared-infra/eventbus/internal/redistest"
)

const (
	// service is the bus ServiceName (the source attribute) of every benchmark.
	service = "bench"
	// evType is the event type of the single-stream benchmarks.
	evType = "bench.uploaded"
	// maxLen is the retention every publisher under test trims to (MAXLEN ~).
	maxLen = bus.DefaultMaxLen
	// batch is the number of events per call in the batch benchmarks.
	batch = 100
	// prefillChunk is how many XADDs one prefill pipeline sends.
	prefillChunk = 1000
	// waitLimit bounds every wait for a consumer, so a bug fails instead of hanging.
	waitLimit = 3 * time.Minute
	// routerClose is the CloseTimeout of the routers under test.
	routerClose = 10 * time.Second
)

// payload is the event data of every benchmark: a photo-upload event of
// realistic size (about 130 bytes of JSON).
var payload = []byte(`{"photoId":"p-0123456789abcdef","userId":"u-4242","album":"holidays-2025","size":482133,"width":4032,"height":3024,"mime":"image/jpeg"}`)

// busFields returns the stream fields that the bus Publisher writes for one
// event of type typ published without extra attributes: the six CloudEvents
// attributes it sets and the data (TestFieldsMatchBus checks this).
func busFields(typ string) []any {
	return []any{
		bus.AttrID, watermill.NewUUID(),
		bus.AttrType, typ,
		bus.AttrSource, service,
		bus.AttrSpecVersion, bus.SpecVersion,
		bus.AttrTime, time.Now().UTC().Format(time.RFC3339Nano),
		bus.AttrDataContentType, bus.DefaultContentType,
		bus.FieldData, payload,
	}
}

// attrMessage returns a Watermill message that carries, as metadata, the
// same attributes the bus writes, for watermill-redisstream's default
// marshaller (which stores metadata as one msgpack field).
func attrMessage(typ string) *message.Message {
	msg := message.NewMessage(watermill.NewUUID(), payload)
	msg.Metadata[bus.AttrType] = typ
	msg.Metadata[bus.AttrSource] = service
	msg.Metadata[bus.AttrSpecVersion] = bus.SpecVersion
	msg.Metadata[bus.AttrTime] = time.Now().UTC().Format(time.RFC3339Nano)
	msg.Metadata[bus.AttrDataContentType] = bus.DefaultContentType
	return msg
}

// redisstreamValues returns what watermill-redisstream's default marshaller
// writes for attrMessage(typ).
func redisstreamValues(typ string) map[string]any {
	v, err := redisstream.DefaultMarshallerUnmarshaller{}.Marshal(typ, attrMessage(typ))
	if err != nil {
		panic(err) // attrMessage never sets the reserved key
	}
	return v
}

// newBus returns a bus with default settings on client under prefix, closed
// at cleanup. The bus never closes client.
func newBus(tb testing.TB, client redis.UniversalClient, prefix string, mutate ...func(*bus.Config)) *bus.Bus {
	tb.Helper()
	cfg := bus.Config{ServiceName: service, Client: client, StreamPrefix: prefix}
	for _, m := range mutate {
		m(&cfg)
	}
	b, err := bus.New(cfg, watermill.NopLogger{})
	if err != nil {
		tb.Fatalf("bus.New: %v", err)
	}
	tb.Cleanup(func() { _ = b.Close() })
	return b
}

// namedClient returns a new *redis.Client for the test Redis whose every
// connection carries a unique CLIENT SETNAME, so CLIENT LIST can count the
// connections it holds. It is closed at cleanup.
func namedClient(tb testing.TB) (*redis.Client, string) {
	tb.Helper()
	opt, err := redis.ParseURL(redistest.URL())
	if err != nil {
		tb.Fatalf("REDIS_URL: %v", err)
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	opt.ClientName = "bench-" + hex.EncodeToString(r[:])
	c := redis.NewClient(opt)
	tb.Cleanup(func() { _ = c.Close() })
	return c, opt.ClientName
}

// connCount returns how many connections named name Redis holds open.
func connCount(tb testing.TB, admin redis.UniversalClient, name string) int {
	tb.Helper()
	list, err := admin.ClientList(context.Background()).Result()
	if err != nil {
		tb.Fatalf("CLIENT LIST: %v", err)
	}
	return bench.CountClients(list, name)
}

// prefill appends n entries to each key keys(i) chosen per entry, with
// pipelined XADDs and no trimming (so none is lost before it is consumed).
func prefill(tb testing.TB, client redis.UniversalClient, n int, key func(i int) string, values func(i int) any) {
	tb.Helper()
	ctx := context.Background()
	for start := 0; start < n; start += prefillChunk {
		pipe := client.Pipeline()
		for i := start; i < min(n, start+prefillChunk); i++ {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: key(i), Values: values(i)})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			tb.Fatalf("prefill: %v", err)
		}
	}
}

// register records types in the bus type registry under prefix, as a
// publisher of the bus does on its first publish of each.
func register(tb testing.TB, client redis.UniversalClient, prefix string, types []string) {
	tb.Helper()
	ctx := context.Background()
	key := bus.Config{StreamPrefix: prefix}.RegistryKey()
	for start := 0; start < len(types); start += prefillChunk {
		members := make([]any, 0, prefillChunk)
		for _, t := range types[start:min(len(types), start+prefillChunk)] {
			members = append(members, t)
		}
		if err := client.SAdd(ctx, key, members...).Err(); err != nil {
			tb.Fatalf("register types: %v", err)
		}
	}
}

// typeNames returns n event types bench.t0000, bench.t0001, …: all matched
// by the pattern "bench.*".
func typeNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("bench.t%04d", i)
	}
	return out
}

// counter is a no-op handler that closes done when it has seen n messages.
type counter struct {
	n    int64
	seen atomic.Int64
	done chan struct{}
}

func newCounter(n int) *counter { return &counter{n: int64(n), done: make(chan struct{})} }

func (c *counter) handle(*message.Message) error {
	if c.seen.Add(1) == c.n {
		close(c.done)
	}
	return nil
}

// handleCtx is handle with the signature of a context-first handler.
func (c *counter) handleCtx(_ context.Context, msg *message.Message) error { return c.handle(msg) }

// runner is what the benchmarks need of a router: Watermill's *message.Router
// has this shape.
type runner interface {
	Run(ctx context.Context) error
	Close() error
}

// run is a router started by start.
type run struct {
	r     runner
	errc  chan error
	start time.Time
	cpu0  time.Duration
	// cpu is the process CPU time from start to the end of wait.
	cpu time.Duration
}

// start runs r in a goroutine.
func start(r runner) *run {
	x := &run{r: r, errc: make(chan error, 1), start: time.Now(), cpu0: processCPU()}
	go func() { x.errc <- r.Run(context.Background()) }()
	return x
}

// wait returns once c has seen c.n messages: the time since start. It stops
// a benchmark's timer.
func (x *run) wait(tb testing.TB, c *counter) time.Duration {
	tb.Helper()
	timeout := time.NewTimer(waitLimit)
	defer timeout.Stop()
	select {
	case <-c.done:
		elapsed := time.Since(x.start)
		x.cpu = processCPU() - x.cpu0
		if b, ok := tb.(*testing.B); ok {
			b.StopTimer()
		}
		return elapsed
	case err := <-x.errc:
		tb.Fatalf("router stopped after %d of %d messages: %v", c.seen.Load(), c.n, err)
	case <-timeout.C:
		_ = x.r.Close()
		tb.Fatalf("saw %d of %d messages in %s", c.seen.Load(), c.n, waitLimit)
	}
	return 0
}

// stop closes the router and waits for Run to return.
func (x *run) stop(tb testing.TB) {
	tb.Helper()
	if err := x.r.Close(); err != nil {
		tb.Errorf("router close: %v", err)
	}
	if err := <-x.errc; err != nil && !errors.Is(err, context.Canceled) {
		tb.Errorf("router run: %v", err)
	}
}

// runUntil runs r until c has seen c.n messages, closes it and returns the
// time from Run to the last message and the process CPU time it took.
func runUntil(tb testing.TB, r runner, c *counter) (elapsed, cpu time.Duration) {
	tb.Helper()
	x := start(r)
	elapsed = x.wait(tb, c)
	x.stop(tb)
	return elapsed, x.cpu
}

// newRouter returns a plain Watermill router with c's no-op handler on topic.
func newRouter(tb testing.TB, sub message.Subscriber, topic string, handler message.NoPublishHandlerFunc) *message.Router {
	tb.Helper()
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: routerClose}, watermill.NopLogger{})
	if err != nil {
		tb.Fatalf("NewRouter: %v", err)
	}
	r.AddConsumerHandler("noop", topic, sub, handler)
	return r
}

// newRedisstreamSubscriber returns a plain watermill-redisstream subscriber
// in a consumer group with default settings besides BlockTime (the bus's
// default). It closes the client it is given, so it gets one of its own.
func newRedisstreamSubscriber(tb testing.TB) *redisstream.Subscriber {
	tb.Helper()
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client:        redistest.Client(tb),
		ConsumerGroup: "bench",
		BlockTime:     bus.DefaultBlockTime,
	}, watermill.NopLogger{})
	if err != nil {
		tb.Fatalf("redisstream.NewSubscriber: %v", err)
	}
	tb.Cleanup(func() { _ = sub.Close() })
	return sub
}

// newRedisstreamPublisher returns a plain watermill-redisstream publisher with
// the default marshaller, trimming to maxLen, on a client of its own (its
// Close closes the client).
func newRedisstreamPublisher(tb testing.TB) *redisstream.Publisher {
	tb.Helper()
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{
		Client:        redistest.Client(tb),
		DefaultMaxlen: maxLen,
	}, watermill.NopLogger{})
	if err != nil {
		tb.Fatalf("redisstream.NewPublisher: %v", err)
	}
	tb.Cleanup(func() { _ = pub.Close() })
	return pub
}

// reportRate reports events/s for n events in elapsed.
func reportRate(b *testing.B, n int, elapsed time.Duration) {
	b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
}

// reportCPU reports this process's CPU time per event ("cpu-ns/event", all
// goroutines, GC included): unlike ns/op it hardly depends on what else the
// machine runs, but it leaves out Redis's share.
func reportCPU(b *testing.B, n int, cpu time.Duration) {
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/event")
}

// processCPU returns the user plus system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fieldNames returns the sorted field names of a stream entry, joined.
func fieldNames(values map[string]any) string {
	names := slices.Sorted(maps.Keys(values))
	return strings.Join(names, ",")
}
